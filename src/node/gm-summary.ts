/**
 * A member's installed SAs in plain words, for logs, `gikev2 gm` in readable
 * mode and `gikev2 demo`: SPIs, directions, traffic, algorithms and
 * Sender-IDs. Never key octets: only the fields named here are read.
 */
import { formatIdentity } from '../ike/identity.ts';
import { GcauthId, IntegId, KwaId, nameOf, ProtocolId, SnId } from '../wire/iana.ts';
import type { TrafficSelector } from '../wire/traffic-selector.ts';
import { encrLabel } from '../gcks/transform-names.ts';
import type { GroupSaTable } from '../gm/sa-table.ts';

const IP_PROTOCOL_NAMES: Readonly<Record<number, string>> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'ipv6-icmp', 132: 'sctp' };

/** `239.1.1.1 udp/5000`, `192.0.2.0-192.0.2.255`, `any`. */
export function describeSelector(ts: TrafficSelector): string {
  if (!('startAddress' in ts)) return `selector type ${ts.type}`;
  const whole = ts.startAddress === ts.endAddress ? ts.startAddress : `${ts.startAddress}-${ts.endAddress}`;
  const anyAddress = ts.startAddress === '0.0.0.0' && ts.endAddress === '255.255.255.255';
  const anyV6 = ts.startAddress === '::' && /^ffff(:ffff){7}$/i.test(ts.endAddress);
  const address = anyAddress || anyV6 ? 'any' : whole;
  const proto = ts.ipProtocol === 0 ? '' : ` ${IP_PROTOCOL_NAMES[ts.ipProtocol] ?? `proto ${ts.ipProtocol}`}`;
  const ports = ts.startPort === 0 && ts.endPort === 0xffff ? '' : ts.startPort === ts.endPort ? `/${ts.startPort}` : `/${ts.startPort}-${ts.endPort}`;
  return `${address}${proto}${proto ? ports : ports ? ` port ${ports.slice(1)}` : ''}`;
}

function integName(id: number): string | undefined {
  return id === IntegId.NONE ? undefined : nameOf(IntegId, id, 'INTEG');
}

/** One line per SA of a group's table, indented by the caller. */
export function describeGroupTable(t: GroupSaTable): string[] {
  const lines: string[] = [];
  const k = t.rekeySa;
  if (k) {
    const auth =
      k.authentication === GcauthId.DIGITAL_SIGNATURE
        ? `signed (${k.authKey ? `${k.authKey.algorithm.scheme}${k.authKey.algorithm.hash ? `-${k.authKey.algorithm.hash}` : ''}` : 'signature'})`
        : 'implicit authentication';
    lines.push(
      `Rekey SA 0x${k.spi.toString('hex')} inbound from ${describeSelector(k.source)} to ${describeSelector(k.destination)}: ` +
        [encrLabel(k.encryption), integName(k.integrity), nameOf(KwaId, k.keyWrap, 'KWA')].filter(Boolean).join(', ') +
        `, ${auth}`,
    );
  } else {
    lines.push('no Rekey SA: keys are replaced over the IKE SA (inband rekey)');
  }
  for (const sa of t.dataSecurity) {
    const alg = [sa.encryption ? encrLabel(sa.encryption) : undefined, integName(sa.integrity), nameOf(SnId, sa.sequenceNumbers, 'SN')]
      .filter(Boolean)
      .join(', ');
    lines.push(
      `${nameOf(ProtocolId, sa.protocolId)} SA 0x${sa.spi.toString('hex')} ${sa.direction} ${describeSelector(sa.source)} -> ${describeSelector(sa.destination)}: ${alg}, ${sa.mode} mode`,
    );
  }
  if (t.senderIds.length > 0) {
    lines.push(`Sender-IDs ${t.senderIds.join(', ')}${t.senderIdBits !== undefined ? ` (${t.senderIdBits} bits)` : ''}`);
  }
  return lines;
}

/** Structured form of the same facts for JSON logs (SPIs as hex, no keys). */
export function groupTableFields(t: GroupSaTable): Record<string, unknown> {
  return {
    group: formatIdentity(t.groupId),
    role: t.role,
    mode: t.mode,
    rekeySa: t.rekeySa
      ? {
          spi: t.rekeySa.spi.toString('hex'),
          destination: describeSelector(t.rekeySa.destination),
          encryption: encrLabel(t.rekeySa.encryption),
          integrity: integName(t.rekeySa.integrity) ?? null,
          keyWrap: nameOf(KwaId, t.rekeySa.keyWrap, 'KWA'),
          authentication: nameOf(GcauthId, t.rekeySa.authentication, 'GCAUTH'),
        }
      : null,
    dataSecuritySas: t.dataSecurity.map((sa) => ({
      protocol: nameOf(ProtocolId, sa.protocolId),
      spi: sa.spi.toString('hex'),
      direction: sa.direction,
      source: describeSelector(sa.source),
      destination: describeSelector(sa.destination),
      encryption: sa.encryption ? encrLabel(sa.encryption) : null,
      integrity: integName(sa.integrity) ?? null,
      sequenceNumbers: nameOf(SnId, sa.sequenceNumbers, 'SN'),
    })),
    senderIds: t.senderIds,
    senderIdBits: t.senderIdBits ?? null,
  };
}
