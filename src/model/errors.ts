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
    super(oneLine(`${file}: ${problem}; ${remedy}.`));
    this.name = 'ModelReadError';
  }
}

/**
 * Problems quote hostile text (tensor names, JSON.parse's snippet of the bad input), which may hold line
 * breaks or control characters; the message stays one line of the same length whatever they hold.
 */
function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what this replaces
  return text.replace(/[\t\n\r\u2028\u2029]/g, ' ').replace(/[\u0000-\u001f\u007f-\u009f]/g, '\ufffd');
}

export function isModelReadError(e: unknown): e is ModelReadError {
  return e instanceof ModelReadError;
}
