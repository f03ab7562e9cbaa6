/**
 * Data loaders and prompt builders for the released S-DPO and DMPO files: strict UTF-8 and
 * concatenated-JSON reading with located errors (`json_stream.ts`), one loader per format
 * that validates every row and writes rows back byte for byte (`sdpo.ts`, `dmpo.ts`), and
 * the original prompt text (`prompts.ts`).
 *
 * @module
 */

export {
  bump,
  decodeUtf8Strict,
  detectJsonLayout,
  emptySummary,
  formatJsonFile,
  formatSummary,
  invalidUtf8Offset,
  jsonTypeName,
  lineColumn,
  parseJsonRows,
  parseJsonStream,
  preview,
  PY_COMPACT_LAYOUT,
  PY_INDENT4_LAYOUT,
  pyJsonArray,
  pyJsonDumps,
  pyJsonNumber,
  pyJsonObject,
  pyJsonString,
  readJsonRows,
  readUtf8Strict,
  rowFieldMap,
} from "./json_stream.ts";
export type {
  JsonField,
  JsonLayout,
  JsonRow,
  JsonRows,
  JsonStyle,
  JsonValue,
  LoadSummary,
} from "./json_stream.ts";

export {
  formatSdpoFile,
  formatSdpoRow,
  loadSdpoFile,
  parseSdpoText,
  readSdpoFile,
  SDPO_FIELDS,
  sdpoFromRows,
} from "./sdpo.ts";
export type { SdpoLoadResult, SdpoReadOptions, SdpoSample, SdpoSource } from "./sdpo.ts";

export {
  DMPO_FIELDS,
  DMPO_FILES,
  dmpoFromRows,
  dmpoSampleChosen,
  dmpoSampleInstruction,
  dmpoSampleRejected,
  formatDmpoFile,
  formatDmpoRow,
  groupDmpoByUser,
  loadDmpoFile,
  ml1mShortTitle,
  parseDmpoInstruction,
  parseDmpoText,
  readDmpoFile,
  splitDmpoGenres,
} from "./dmpo.ts";
export type {
  DmpoDatasetFiles,
  DmpoLoadResult,
  DmpoOutputKind,
  DmpoReadOptions,
  DmpoSample,
  DmpoSource,
  DmpoUserGroup,
  ParsedDmpoInstruction,
} from "./dmpo.ts";

export {
  DMPO_PIECES,
  dmpoChosen,
  dmpoInstruction,
  dmpoRanking,
  dmpoRejected,
  dmpoTitle,
  dmpoUserMessage,
  LLAMA2_DEFAULT_SYSTEM_PROMPT,
  llama2ChatPrompt,
  MOVIE_WORDING,
  SDPO_TEMPLATES,
  sdpoPrompt,
} from "./prompts.ts";
export type { DmpoWording, SdpoPrompt, SdpoPromptOptions } from "./prompts.ts";
