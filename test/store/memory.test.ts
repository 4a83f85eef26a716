import { storeContract } from './contract.ts';
import { memoryHarness } from './helpers.ts';

storeContract('MemoryStore', memoryHarness, { persistent: false });
