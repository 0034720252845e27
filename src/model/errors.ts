/**
 * Every failure to read a model becomes one of these: a single sentence that names the file, says what
 * is wrong and what to do. The CLI prints `message` as is; the extension shows it in a notification.
 */
export class ModelReadError extends Error {
  constructor(
    readonly file: string,
    readonly problem: string,
    readonly remedy: string,
  ) {
    super(`${file}: ${problem}; ${remedy}.`);
    this.name = 'ModelReadError';
  }
}

export function isModelReadError(e: unknown): e is ModelReadError {
  return e instanceof ModelReadError;
}
