/**
 * Remembers which keys a check succeeded for, for this session: the worker-package probe costs a Python start
 * (about 1.5 s) on every job otherwise. Only a success is kept, so a user who installs the package and tries
 * again is checked again; jobs that start together share one check instead of each starting its own.
 */
export class SuccessCache {
  private readonly passed = new Set<string>();
  private readonly pending = new Map<string, Promise<boolean>>();

  async check(key: string, run: () => Promise<boolean>): Promise<boolean> {
    if (this.passed.has(key)) return true;
    const inFlight = this.pending.get(key);
    if (inFlight) return inFlight;
    const attempt = run()
      .then((ok) => {
        if (ok) this.passed.add(key);
        return ok;
      })
      .finally(() => this.pending.delete(key));
    this.pending.set(key, attempt);
    return attempt;
  }

  forget(key: string): void {
    this.passed.delete(key);
  }
}
