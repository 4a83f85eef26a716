import { storeContract } from './contract.ts';
import { sqliteHarness } from './helpers.ts';

storeContract('SqliteStore', () => sqliteHarness());
storeContract('SqliteStore (durability full, shared lock)', () => sqliteHarness({ durability: 'full', lock: 'shared' }));
