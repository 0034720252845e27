import uPlot from 'uplot';

/** The options a page gives; the slot supplies the size. */
export type ChartOptions = Omit<uPlot.Options, 'width' | 'height'>;

/**
 * A page's one uPlot chart: drawn at its host element's width, replaced on redraw, and kept at the panel's width
 * while the panel is resized (uPlot has a fixed pixel size of its own).
 */
export class ChartSlot {
  private chart: uPlot | undefined;
  private host: HTMLElement | undefined;

  constructor(
    private readonly page: HTMLElement,
    private readonly minWidth: number,
    private readonly height: () => number,
  ) {
    new ResizeObserver(() => this.chart?.setSize({ width: this.width(), height: this.height() })).observe(page);
  }

  get current(): uPlot | undefined {
    return this.chart;
  }

  draw(host: HTMLElement, options: ChartOptions, data: uPlot.AlignedData): uPlot {
    this.clear();
    this.host = host;
    this.chart = new uPlot({ ...options, width: this.width(), height: this.height() }, data, host);
    return this.chart;
  }

  /** Drops the chart, before its host leaves the page. */
  clear(): void {
    this.chart?.destroy();
    this.chart = undefined;
  }

  private width(): number {
    return Math.max(this.minWidth, this.host?.clientWidth || this.page.clientWidth || 2 * this.minWidth);
  }
}
