/**
 * Progress of a XEP-0313 catch-up: counts messages stored while the account's MAM gap is open and
 * reports `catching up… N messages` at most every `everyMs`, then `caught up: N messages` once
 * the gap closes. Pure state + an injected clock, so it is tested without a server.
 */
export class CatchupProgress {
  private active = false;
  private count = 0;
  private reportedCount = 0;
  private lastReportAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly report: (line: string) => void,
    private readonly clock: () => number = Date.now,
    private readonly everyMs = 500,
  ) {}

  get catchingUp(): boolean {
    return this.active;
  }

  get stored(): number {
    return this.count;
  }

  /** Feed the current `mam.gapOpen` of the account. */
  gap(open: boolean): void {
    if (open && !this.active) {
      this.active = true;
      this.count = 0;
      this.reportedCount = 0;
      this.lastReportAt = Number.NEGATIVE_INFINITY;
    } else if (!open && this.active) {
      this.active = false;
      if (this.count > 0) this.report(`caught up: ${plural(this.count)}`);
    }
  }

  /** A message was stored (counted only during a catch-up). */
  messageStored(): void {
    if (!this.active) return;
    this.count += 1;
    this.tick();
  }

  /** Report if there is news and the last report is at least `everyMs` old. */
  tick(): void {
    const now = this.clock();
    if (!this.active || this.count === this.reportedCount || now - this.lastReportAt < this.everyMs)
      return;
    this.lastReportAt = now;
    this.reportedCount = this.count;
    this.report(`catching up… ${plural(this.count)}`);
  }
}

function plural(n: number): string {
  return `${n} message${n === 1 ? "" : "s"}`;
}

/**
 * Progress lines of one upload or download: `upload photo.jpg: 1.5/5.0 MB (30%)` each time it
 * crosses another 10 % (and once at the end); without a known total, every further MiB.
 */
export class TransferProgressLines {
  private lastStep = -1;

  constructor(
    private readonly report: (line: string) => void,
    private readonly label: string,
  ) {}

  update(done: number, total: number | null): void {
    const step = total ? Math.floor((done / total) * 10) : Math.floor(done / 1048576);
    if (step === this.lastStep) return;
    this.lastStep = step;
    const mb = (n: number) => (n / 1048576).toFixed(1);
    this.report(
      total
        ? `${this.label}: ${mb(done)}/${mb(total)} MB (${Math.floor((done / total) * 100)}%)`
        : `${this.label}: ${mb(done)} MB`,
    );
  }
}
