// The CounterStore contract against the in-memory counters (one process).

import { MemoryCounterStore } from '../../src/store/memory/memory-counter-store.js';
import { counterStoreContract } from './counter-store.contract.js';

counterStoreContract('MemoryCounterStore', {
  open: async (windowSeconds) => new MemoryCounterStore(windowSeconds),
  openShared: { skip: "in-memory counters are one process's own; replicas share counters through Redis" },
});
