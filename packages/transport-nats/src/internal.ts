/** @internal Sibling-package surface of @meshroute/transport-nats. Not a public API. */

export { natsClientOptions } from './connection.js';
export { isNatsTimeout, isNoResponders } from './errors.js';
export { isSubjectToken } from './options.js';
export { processAlive, processesMentioning } from './process-probe.js';
export { killOnExit } from './server-process.js';
export {
  SH_COMMAND_NOT_FOUND,
  SUPERVISED_BY_WATCHDOG,
  type SupervisedSpawnOptions,
  spawnSupervised,
} from './supervised.js';
