/**
 * A check or report per key (an interpreter) kept for this session once it succeeded: the worker-package probe
 * and the worker's reports each cost a Python start otherwise. Only a success is kept, so a user who installs the
 * package and tries again is checked again; callers that ask together share one attempt instead of each starting
 * its own.
 */
export class SuccessCache<T = boolean> {
  private readonly kept = new Map<string, Promise<T>>();

  constructor(private readonly succeeded: (value: T) => boolean = Boolean) {}

  check(key: string, run: () => Promise<T>): Promise<T> {
    let attempt = this.kept.get(key);
    if (!attempt) {
      attempt = run();
      this.kept.set(key, attempt);
      attempt.then(
        (value) => this.succeeded(value) || this.kept.delete(key),
        () => this.kept.delete(key),
      );
    }
    return attempt;
  }
}
