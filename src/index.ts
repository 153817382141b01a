// comfy-gate as a library: create a gateway from a config. Nothing runs on import.

import { withChildPorts } from './backends/child-port.js';
import type { GatewayConfig } from './config/schema.js';
import { createGatewayServer, type Gateway } from './server/app.js';
import { createLogger, type Logger } from './log/logger.js';
import { createMetrics } from './observability/metrics.js';
import { createStores } from './store/index.js';

export type { GatewayConfig, AuthMode } from './config/schema.js';
export type { Gateway } from './server/app.js';
export { loadServeConfig, ConfigError } from './config/load.js';
export { GatewayError } from './errors.js';
export { StoreCorruptError } from './store/types.js';

/**
 * Opens the stores in `config.userDirectory` and builds the gateway; call `listen()` to start it
 * (and the child ComfyUIs of `config.backends`, each on a free loopback port chosen here).
 * @throws StoreCorruptError when a store file cannot be read (nothing is overwritten).
 * @example const gateway = await createGateway(loadServeConfig(['--require-api-auth'], {})); await gateway.listen();
 */
export async function createGateway(
  config: GatewayConfig,
  log: Logger = createLogger(config.logLevel),
): Promise<Gateway & { storeLocation: string; keyCount(): number; backends: GatewayConfig['backends'] }> {
  const metrics = createMetrics({ perKey: config.metricsPerKey });
  const stores = await createStores(config, log, (store, seconds) => metrics.storeWrite(store, seconds));
  const placed = await withChildPorts(config);
  const gateway = createGatewayServer(placed, stores, log, metrics);
  return { ...gateway, storeLocation: stores.location, keyCount: () => stores.keys.size(), backends: placed.backends };
}
