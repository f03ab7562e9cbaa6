/** A worker engine failing a training step's job (see `_engine_fault.ts`). */
import { scorePairs, train } from "../../src/train.ts";
import { snapshot, toyExamples } from "../_toy.ts";
import { engineFaultTest } from "./_engine_fault.ts";

engineFaultTest(
  "a worker engine failing a training step: its share is computed here, same numbers",
  async (model) => {
    // Training first: the first failed job marks the engine failed, and later work stays here.
    await train(model, toyExamples(), {
      stage: "sdpo",
      numNegatives: 3,
      beta: 1,
      // Live: a cached reference would be scored first, and that job would be the one to fail.
      reference: "live",
      steps: 3,
      batchSize: 8,
      microBatchSize: 8,
      lr: 1e-2,
      logEvery: 1,
    }, { progress: false });
    const pairs = toyExamples().map((e) => ({ prompt: e.prompt, response: e.chosen }));
    return { weights: snapshot(model), after: scorePairs(model, pairs, { microBatchSize: 4 }) };
  },
);
