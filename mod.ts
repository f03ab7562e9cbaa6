/**
 * recalign: S-DPO, DMPO and DPO4Rec — preference alignment of LLM recommenders — on one small
 * TensorFlow.js engine. This module re-exports the public API; the README has the tour.
 *
 * @module
 */
export {
  type BackendInfo,
  backendInfo,
  type BackendName,
  BACKENDS,
  customOp,
  ensureBackend,
  initBackend,
  tf,
} from "./src/backend.ts";
export {
  CheckpointError,
  ConfigError,
  DataFormatError,
  type DataLocation,
  InputError,
  NonFiniteError,
  RecalignError,
} from "./src/errors.ts";
export { Rng, type RngState } from "./src/rng.ts";
export {
  type ForwardOptions,
  headDim,
  type KVCache,
  type LlamaConfig,
  LlamaModel,
  PRESETS,
  validateConfig,
  variableKey,
} from "./src/model.ts";
export {
  DEFAULT_LORA_CONFIG,
  LLAMA_PROJECTIONS,
  type LoraConfig,
  LoraLinear,
  validateLoraConfig,
} from "./src/lora.ts";
export {
  dmpoLoss,
  dpoLoss,
  IGNORE_INDEX,
  LOSSES,
  type LossOutput,
  type PreferenceInputs,
  sdpoLoss,
  sdpoNegativeWeights,
  sequenceLogProbs,
  sftLoss,
} from "./src/losses.ts";
export {
  batchIndices,
  DEFAULT_TRAIN_CONFIG,
  type MetricsRow,
  scorePairs,
  type Stage,
  STAGES,
  train,
  type TrainConfig,
  type TrainExample,
  type TrainOptions,
  type TrainResult,
} from "./src/train.ts";
export { AdamW, clipGradsByGlobalNorm, cosineSchedule, GradAccumulator } from "./src/optim.ts";
export {
  loadSafetensors,
  readSafetensors,
  readSafetensorsHeader,
  writeSafetensors,
} from "./src/safetensors.ts";
export {
  padPairs,
  type PreferenceExample,
  type SequencePair,
  stackPreference,
} from "./src/data/batch.ts";
export { type Tokenizer, WordTokenizer } from "./src/tokenizer.ts";
export {
  crossDomainDmpo,
  crossDomainSdpo,
  DEFAULT_WORLD_CONFIG,
  type DmpoSample as WorldDmpoSample,
  dmpoSamples,
  fewShot,
  historyBayesScores,
  makeWorld,
  oracleScores,
  popularityScores,
  type SdpoSample as WorldSdpoSample,
  sdpoSamples,
  trueScores,
  type World,
  type WorldConfig,
} from "./src/data/world.ts";
export { worldDmpoPrompt, worldSdpoPrompt } from "./src/data/world_text.ts";
export {
  aucPaired,
  aucReleased,
  bootstrapCI,
  hitRateAtK,
  meanStd,
  ndcgAtK,
  pairedBootstrapCI,
  rocAuc,
  sdpoGenerationMetrics,
  sdpoValidity,
} from "./src/eval/metrics.ts";
export {
  dmpoChosen,
  dmpoInstruction,
  dmpoRanking,
  dmpoRejected,
  type DmpoSample,
  formatDmpoFile,
  formatDmpoRow,
  formatSdpoFile,
  formatSdpoRow,
  llama2ChatPrompt,
  loadDmpoFile,
  loadSdpoFile,
  readDmpoFile,
  readSdpoFile,
  SDPO_TEMPLATES,
  sdpoPrompt,
  type SdpoSample,
} from "./src/data/mod.ts";
export {
  configFromHf,
  configToHf,
  estimateModelBytes,
  loadPretrained,
  type LoadPretrainedOptions,
  type Pretrained,
  saveModel,
  SUPPORTED_ARCHITECTURES,
} from "./src/checkpoint.ts";
export { loadAdapter, peftKey, readAdapterConfig, saveAdapter } from "./src/adapter.ts";
export { HfTokenizer } from "./src/tokenizer_hf.ts";
export { toSdpoMultiNegJsonl, toTrlJsonl } from "./src/export.ts";
export { run as runSdpoExperiment, type SdpoRunConfig } from "./src/experiments/sdpo.ts";
export { type DmpoRunConfig, run as runDmpoExperiment } from "./src/experiments/dmpo.ts";
export {
  type BaseModel,
  currentBaseModel,
  MODEL_ENV,
  useBaseModel,
} from "./src/experiments/pretrained.ts";
export { armSlug, runFolders, runStage, setRunFolders } from "./src/experiments/runs.ts";
export { auditPath, formatAuditMarkdown } from "./src/data/audit.ts";
export { BUILD_DATASETS, buildDataset } from "./src/data/build.ts";
export { downloadDataset, DownloadError, downloadFile, RAW_DATASETS } from "./src/data/download.ts";
export {
  type BaselineName,
  BASELINES,
  Caser,
  encodeHistory,
  evaluateOnSamples,
  Gru4rec,
  Popularity,
  Sasrec,
  type SequentialRecommender,
  trainBaseline,
  trainingExamples,
} from "./src/baselines/mod.ts";
