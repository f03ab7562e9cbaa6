/** A worker engine failing a scoring job (see `_engine_fault.ts`). */
import { scorePairs } from "../../src/train.ts";
import { toyExamples } from "../_toy.ts";
import { engineFaultTest } from "./_engine_fault.ts";

engineFaultTest(
  "a worker engine failing to score: its share is computed here, same numbers",
  (model) => {
    const pairs = toyExamples().map((e) => ({ prompt: e.prompt, response: e.chosen }));
    return Promise.resolve({ scores: scorePairs(model, pairs, { microBatchSize: 4 }) });
  },
);
