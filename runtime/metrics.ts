import { Counter, Gauge, type Registry } from "prom-client";

/**
 * Scrape-time metrics on a private prom-client registry. The data path only
 * bumps plain numbers; these families read them when Prometheus scrapes, so
 * scraping costs nothing per packet. Names follow Prometheus conventions:
 * `ina_` prefix, base units, `_total` on counters, low-cardinality labels.
 */

type Sample<L extends string> = [Partial<Record<L, string | number>>, number];

/** A counter whose values are read from plain numbers at scrape time. */
export function counterFrom<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: () => Iterable<Sample<L>>,
): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of read()) this.inc(labels as Record<L, string | number>, value);
    },
  });
}

/** A gauge whose values are read at scrape time. */
export function gaugeFrom<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  read: () => Iterable<Sample<L>>,
): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of read()) this.set(labels as Record<L, string | number>, value);
    },
  });
}
