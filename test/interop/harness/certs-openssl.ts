/**
 * A throw-away PKI made with the openssl CLI (node:crypto cannot issue
 * X.509 certificates): one CA and leaf certificates with a dNSName SAN, so
 * a charon round `{ auth: 'pubkey', id: <dns>, certs: [...] }` works.
 *
 *     const pki = makeTestPki({ leaves: [{ name: 'gcks', dns: 'gcks.test' }] });
 *     startCharon({ files: pkiFilesFor(pki, 'gcks'), ... })
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireTool } from '../../helpers/tools.ts';

export type TestKeyType = 'ec-p256' | 'ec-p384' | 'ed25519' | 'rsa2048';

export interface TestLeaf {
  name: string;
  /** dNSName SAN, usable as the IKE identity. */
  dns: string;
  pem: { cert: string; key: string };
}

export interface TestPki {
  caCertPem: string;
  caKeyPem: string;
  leaves: Record<string, TestLeaf>;
  leaf(name: string): TestLeaf;
}

export function opensslUnavailable(): string | undefined {
  return requireTool('openssl', ['openssl', 'version'], 'test certificates for pubkey interop');
}

function openssl(args: readonly string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8', timeout: 20_000 });
  if (r.error) throw new Error(`openssl ${args[0]}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
}

function genKey(type: TestKeyType, out: string, cwd: string): void {
  const a: Record<TestKeyType, string[]> = {
    'ec-p256': ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'],
    'ec-p384': ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384'],
    ed25519: ['-algorithm', 'ED25519'],
    rsa2048: ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'],
  };
  openssl(['genpkey', ...a[type], '-out', out], cwd); // PKCS#8 PEM
}

/** Creates a CA and leaves (PKCS#8 keys, PEM certs valid 2 days). Synchronous; ~10-50 ms per EC key. */
export function makeTestPki(opts: {
  caSubject?: string;
  caKeyType?: TestKeyType;
  leaves: ReadonlyArray<{ name: string; dns: string; keyType?: TestKeyType }>;
}): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'gk-pki-'));
  try {
    genKey(opts.caKeyType ?? 'ec-p256', 'ca.key', dir);
    const caSubj = opts.caSubject ?? '/O=gikev2 test/CN=gikev2 test CA';
    openssl(
      ['req', '-x509', '-new', '-key', 'ca.key', '-subj', caSubj, '-days', '2', '-out', 'ca.crt',
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
      dir,
    );
    const leaves: Record<string, TestLeaf> = {};
    opts.leaves.forEach((l, i) => {
      if (!/^[a-z0-9-]+$/.test(l.name)) throw new Error(`leaf name '${l.name}': use [a-z0-9-]`);
      genKey(l.keyType ?? 'ec-p256', `${l.name}.key`, dir);
      openssl(['req', '-new', '-key', `${l.name}.key`, '-subj', `/O=gikev2 test/CN=${l.dns}`, '-out', `${l.name}.csr`], dir);
      writeFileSync(
        join(dir, `${l.name}.ext`),
        `subjectAltName=DNS:${l.dns}\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n`,
      );
      openssl(
        ['x509', '-req', '-in', `${l.name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', String(1000 + i),
          '-days', '2', '-extfile', `${l.name}.ext`, '-out', `${l.name}.crt`],
        dir,
      );
      leaves[l.name] = {
        name: l.name,
        dns: l.dns,
        pem: { cert: readFileSync(join(dir, `${l.name}.crt`), 'utf8'), key: readFileSync(join(dir, `${l.name}.key`), 'utf8') },
      };
    });
    return {
      caCertPem: readFileSync(join(dir, 'ca.crt'), 'utf8'),
      caKeyPem: readFileSync(join(dir, 'ca.key'), 'utf8'),
      leaves,
      leaf(name) {
        const l = leaves[name];
        if (l === undefined) throw new Error(`no leaf '${name}'`);
        return l;
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * CharonOptions.files for one leaf: its cert as x509/<name>.crt, key as
 * private/<name>.key, and the CA as x509ca/ca.crt. Reference them as
 * `certs: ['<name>.crt']` (local) and `cacerts: ['ca.crt']` (remote).
 */
export function pkiFilesFor(pki: TestPki, leafName: string): {
  x509: Record<string, string>;
  x509ca: Record<string, string>;
  private: Record<string, string>;
} {
  const l = pki.leaf(leafName);
  return {
    x509: { [`${l.name}.crt`]: l.pem.cert },
    x509ca: { 'ca.crt': pki.caCertPem },
    private: { [`${l.name}.key`]: l.pem.key },
  };
}
