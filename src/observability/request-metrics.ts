// Requests by route group: counted as plain numbers on every request, handed to prom-client only when /metrics is read.

import { Counter, Histogram, type MetricObjectWithValues, type MetricValueWithName, type Registry } from 'prom-client';

/** One route group's requests since start. */
interface RouteFigures {
  /** Requests by status class (index 2 for 2xx), not yet added to the counter. */
  uncounted: number[];
  /** Requests per duration bucket, not cumulative: slot i holds those over bound i - 1 and up to bound i; the last slot those over every bound. */
  buckets: number[];
  sum: number;
  count: number;
}

/** The `status_class` label of a status: `2xx` for 200 to 299. */
export const statusClassOf = (status: number): string => `${Math.floor(status / 100)}xx`;

/** What the gateway records of each request it answers. */
export interface RequestMetrics {
  request(route: string, status: number, seconds: number): void;
}

/**
 * prom-client's labelled children hash and check their labels on every call (about 2 µs per request
 * for the histogram alone, docs/performance.md). Here a request is a Map lookup and a few additions;
 * the counter is brought up to date when scraped (`collect`), and the histogram is read out from
 * these figures whole. Nothing resets them: the gateway never calls the registry's `resetMetrics`.
 */
export function createRequestMetrics(registry: Registry, options: { buckets: readonly number[] }): RequestMetrics {
  const bounds = [...options.buckets].sort((a, b) => a - b);
  const routes = new Map<string, RouteFigures>();

  new Counter({
    name: 'comfy_gate_http_requests_total',
    help: 'Requests answered, by route group and status class.',
    labelNames: ['route', 'status_class'],
    registers: [registry],
    collect() {
      for (const [route, figures] of routes) {
        figures.uncounted.forEach((count, statusClass) => {
          if (count > 0) this.inc({ route, status_class: statusClassOf(100 * statusClass) }, count);
        });
        figures.uncounted.fill(0);
      }
    },
  });
  new RouteDurationHistogram(registry, bounds, routes);

  return {
    request(route, status, seconds) {
      let figures = routes.get(route);
      if (!figures)
        routes.set(route, (figures = { uncounted: new Array<number>(10).fill(0), buckets: new Array<number>(bounds.length + 1).fill(0), sum: 0, count: 0 }));
      // Node answers with statuses from 100 to 999 only.
      figures.uncounted[Math.floor(status / 100)]! += 1;
      let slot = 0;
      while (slot < bounds.length && seconds > bounds[slot]!) slot += 1;
      figures.buckets[slot]! += 1;
      figures.sum += seconds;
      figures.count += 1;
    },
  };
}

type Label = 'route' | 'le';
type Exposition = MetricObjectWithValues<MetricValueWithName<Label>>;

const NAME = 'comfy_gate_http_request_duration_seconds';
const HELP = 'Time from request to the end of the response, by route group.';

/**
 * The duration histogram read out from the route figures: the buckets (cumulative, as Prometheus
 * wants them), `+Inf`, the sum and the count of each route group. prom-client's registry reads a
 * metric's `getForPromString` when it has one (its Histogram does) and `get` otherwise; both are
 * answered here.
 */
class RouteDurationHistogram extends Histogram<Label> {
  constructor(
    registry: Registry,
    private readonly bounds: readonly number[],
    private readonly routes: ReadonlyMap<string, RouteFigures>,
  ) {
    super({ name: NAME, help: HELP, labelNames: ['route'], buckets: [...bounds], registers: [registry] });
  }

  override get(): Promise<Exposition> {
    const values: Array<MetricValueWithName<Label>> = [];
    for (const [route, { buckets, sum, count }] of this.routes) {
      let below = 0;
      this.bounds.forEach((bound, slot) => {
        below += buckets[slot]!;
        values.push({ metricName: `${NAME}_bucket`, labels: { route, le: bound }, value: below });
      });
      values.push(
        { metricName: `${NAME}_bucket`, labels: { route, le: '+Inf' }, value: count },
        { metricName: `${NAME}_sum`, labels: { route }, value: sum },
        { metricName: `${NAME}_count`, labels: { route }, value: count },
      );
    }
    // Shaped as prom-client's own Histogram answers; its types describe `type` as a numeric enum its code never uses (the registry writes it as is).
    return Promise.resolve({ name: NAME, help: HELP, type: 'histogram', values, aggregator: 'sum' } as unknown as Exposition);
  }

  getForPromString(): Promise<Exposition> {
    return this.get();
  }
}
