/**
 * Error classes. Every error recalign throws on purpose extends {@link RecalignError},
 * sets `name`, and says what was expected and what was got, so a CLI can print the
 * message alone (never a bare stack trace).
 *
 * @module
 */

/** Base class of every error recalign throws on purpose. */
export class RecalignError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RecalignError";
  }
}

/** Where a data error happened: file, 1-based row (or line), field. */
export interface DataLocation {
  /** The file, as the user named it. */
  file: string;
  /** 1-based row (or line) number, when known. */
  row?: number;
  /** The field (JSON key or column), when known. */
  field?: string;
}

/** A row of a data file is malformed: names file, row and field, expected vs got. */
export class DataFormatError extends RecalignError {
  readonly file: string;
  readonly row?: number;
  readonly field?: string;
  constructor(where: DataLocation, problem: string, options?: ErrorOptions) {
    const parts = [where.file];
    if (where.row !== undefined) parts.push(`row ${where.row}`);
    if (where.field !== undefined) parts.push(`field "${where.field}"`);
    super(`${parts.join(", ")}: ${problem}`, options);
    this.name = "DataFormatError";
    this.file = where.file;
    this.row = where.row;
    this.field = where.field;
  }
}

/** A configuration value or CLI flag is invalid: names the field and the value. */
export class ConfigError extends RecalignError {
  readonly field: string;
  constructor(field: string, problem: string, options?: ErrorOptions) {
    super(`config "${field}": ${problem}`, options);
    this.name = "ConfigError";
    this.field = field;
  }
}

/** A function argument (usually a tensor) has the wrong shape or value. */
export class InputError extends RecalignError {
  readonly argument: string;
  constructor(argument: string, problem: string, options?: ErrorOptions) {
    super(`argument "${argument}": ${problem}`, options);
    this.name = "InputError";
    this.argument = argument;
  }
}

/** A checkpoint or model file is missing, corrupt, or holds a mis-shaped tensor. */
export class CheckpointError extends RecalignError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CheckpointError";
  }
}

/** Training hit a non-finite loss or gradient. */
export class NonFiniteError extends RecalignError {
  readonly step: number;
  constructor(step: number, message: string, options?: ErrorOptions) {
    super(`step ${step}: ${message}`, options);
    this.name = "NonFiniteError";
    this.step = step;
  }
}
