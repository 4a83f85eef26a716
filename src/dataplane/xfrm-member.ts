/**
 * A member's group SAs in the Linux kernel: keeps an XfrmBackend in step
 * with one group of a GmService. The member daemon calls `onEvent` with
 * every member event (registration, rekeys, exclusion) and `close` on
 * shutdown:
 *
 *   const xfrm = xfrmSyncFromMember(gm, new XfrmBackend({ dryRun }), { group: 'video', localAddress });
 *   onEvent: (e) => xfrm.onEvent(e)          // and on stop: xfrm.close()
 *
 * Policies and states follow `gm.saTable()`: SAs a rekey adds are installed,
 * SAs that left the table (retired after DTD, expired) are deleted; on
 * exclusion or leaving every state and policy goes at once.
 */
import type { GmService, GmServiceEvent } from '../gm/service.ts';
import type { Identity } from '../gcks/config-identities.ts';
import { formatIdentity, sameIdentity } from '../ike/identity.ts';
import { ProtocolId, TsType } from '../wire/iana.ts';
import type { EspFramingMode } from './esp.ts';
import { channelTableFromMember } from './gm-sas.ts';
import type { XfrmBackend, XfrmOutcome } from './xfrm.ts';

export interface XfrmMemberOptions {
  /** IDg text or its octets as text ('video'). */
  readonly group: string | Identity;
  /** This member's address (outbound states and templates); needed when it sends. */
  readonly localAddress?: string | undefined;
  /** Default: the destination of the group's first ESP SA. */
  readonly groupAddress?: string | undefined;
  readonly port?: number | undefined;
  /** Default: the group's mode. */
  readonly mode?: EspFramingMode | undefined;
  readonly replayWindow?: number | undefined;
}

const KEY_EVENTS: ReadonlySet<string> = new Set(['registered', 'keys', 'tek-installed', 'tek-activated', 'tek-retired', 'excluded', 'left']);

export class XfrmMemberSync {
  private readonly groupId: Identity;
  readonly group: string;
  private excluded: boolean;

  constructor(
    private readonly gm: GmService,
    readonly backend: XfrmBackend,
    private readonly options: XfrmMemberOptions,
  ) {
    const want = options.group;
    const found = gm.config.groups.find((g) =>
      typeof want === 'string' ? formatIdentity(g.id) === want || g.id.data.toString('utf8') === want : sameIdentity(g.id, want),
    );
    if (!found) throw new Error(`xfrm: the member is not configured for group ${typeof want === 'string' ? want : formatIdentity(want)}`);
    this.groupId = found.id;
    this.group = formatIdentity(found.id);
    this.excluded = gm.rekeyState(found.id)?.status === 'excluded';
  }

  /** Feed every member event; returns what was run (nothing for other groups' or unrelated events). */
  onEvent(e: GmServiceEvent): XfrmOutcome[] {
    if (!KEY_EVENTS.has(e.type) || !('group' in e) || e.group !== this.group) return [];
    if (e.type === 'excluded' || e.type === 'left') this.excluded = true;
    else if (e.type === 'registered') this.excluded = false;
    return this.sync();
  }

  /** Makes the kernel match the member's table now. */
  sync(): XfrmOutcome[] {
    const table = this.excluded ? undefined : this.gm.saTable().get(this.groupId);
    if (!table) return this.backend.removeAll();
    let address = this.options.groupAddress;
    let port = this.options.port;
    if (address === undefined) {
      for (const sa of table.dataSecurity) {
        const d = sa.destination;
        if (sa.protocolId !== ProtocolId.ESP || 'raw' in d || d.type !== TsType.TS_IPV4_ADDR_RANGE || d.startAddress !== d.endAddress) continue;
        address = d.startAddress;
        if (port === undefined && d.startPort === d.endPort) port = d.startPort;
        break;
      }
    }
    if (address === undefined) return this.backend.removeAll();
    const sas = channelTableFromMember(table, { address, port }).sas;
    return this.backend.apply({
      groupAddress: address,
      port,
      mode: this.options.mode ?? table.mode,
      localAddress: this.options.localAddress,
      send: table.role !== 'receiver' && this.options.localAddress !== undefined,
      receive: table.role !== 'sender',
      sas,
      replayWindow: this.options.replayWindow,
    });
  }

  /** Shutdown: removes every state and policy installed for the group. */
  close(): XfrmOutcome[] {
    return this.backend.removeAll();
  }
}

export function xfrmSyncFromMember(gm: GmService, backend: XfrmBackend, options: XfrmMemberOptions): XfrmMemberSync {
  return new XfrmMemberSync(gm, backend, options);
}
