import { ExchangeType, GcauthId, nameOf } from './iana.ts';

/**
 * The two attribute tables of RFC 9838 Section 5 as data, with their notes
 * turned into conditions. Notation (Section 5):
 *
 *   S     a single attribute MUST be present        (exactly one)
 *   [S]   the attribute is OPTIONAL, single         (zero or one)
 *   [M]   multiple attributes MAY be present        (any number)
 *   S[M]  at least one MUST be present, more MAY    (one or more)
 *   -     the attribute MUST NOT be present         (zero)
 *
 * Restrictions apply per substructure (Section 5): GSA attributes per GSA
 * policy, SA_KEY per group key bag, GW policy and member key bag attributes
 * over the payload's GW policy / member key bags (a KD carries the bags of
 * one member, so this is "per member").
 */
export type Occurrence = 'S' | '[S]' | '[M]' | 'S[M]' | '-';

/** The G-IKEv2 exchanges the tables cover. */
export type GroupExchange =
  | typeof ExchangeType.GSA_AUTH
  | typeof ExchangeType.GSA_REGISTRATION
  | typeof ExchangeType.GSA_REKEY
  | typeof ExchangeType.GSA_INBAND_REKEY;

export type RekeyStyle = 'multicast' | 'inband';

/** What the tables' notes depend on, beyond the message itself. */
export interface TableConditions {
  readonly exchange: GroupExchange;
  /** Which table applies to a registration; GSA_REKEY / GSA_INBAND_REKEY imply their own. */
  readonly rekeyStyle: RekeyStyle;
  /** The GM's registration request carried N(GROUP_SENDER). */
  readonly groupSender: boolean;
  /** A Data-Security SA of the policy uses a counter-based cipher mode (Section 2.5). */
  readonly counterMode: boolean;
  /** GCAUTH transform ID of the Rekey SA (GcauthId), if there is one. */
  readonly gcauth?: number;
  /** The GCKS manages keys with a key tree (LKH, Appendix A). */
  readonly keyTree: boolean;
}

export type TableAttribute =
  | 'GSA_KEY_LIFETIME'
  | 'GSA_INITIAL_MESSAGE_ID'
  | 'GSA_NEXT_SPI'
  | 'GWP_ATD'
  | 'GWP_DTD'
  | 'GWP_SENDER_ID_BITS'
  | 'SA_KEY'
  | 'WRAP_KEY'
  | 'AUTH_KEY'
  | 'GM_SENDER_ID';

export function isRegistration(exchange: number): boolean {
  return exchange === ExchangeType.GSA_AUTH || exchange === ExchangeType.GSA_REGISTRATION;
}

/** GSA_REKEY always uses the multicast table, GSA_INBAND_REKEY the inband one. */
export function tableFor(c: TableConditions): RekeyStyle {
  if (c.exchange === ExchangeType.GSA_REKEY) return 'multicast';
  if (c.exchange === ExchangeType.GSA_INBAND_REKEY) return 'inband';
  return c.rekeyStyle;
}

/** Note 1: a sender of a counter-mode policy gets Sender-ID bits and Sender-IDs. */
function senderNote(c: TableConditions): boolean {
  return c.counterMode && c.groupSender;
}

/**
 * The occurrence Section 5 requires of `attribute` in the exchange of `c`.
 * `rekeySa` tells, for SA_KEY, whether the key bag is for the Rekey SA
 * (GIKE_UPDATE) rather than a Data-Security SA (note 2).
 */
export function occurrence(attribute: TableAttribute, c: TableConditions, rekeySa = false): Occurrence {
  const registration = isRegistration(c.exchange);
  const multicast = tableFor(c) === 'multicast';
  const signatures = c.gcauth === GcauthId.DIGITAL_SIGNATURE;
  switch (attribute) {
    case 'GSA_KEY_LIFETIME':
      return multicast ? 'S' : '[S]';
    case 'GSA_INITIAL_MESSAGE_ID':
      return multicast ? '[S]' : '-';
    case 'GSA_NEXT_SPI':
      return multicast ? '[M]' : '-';
    case 'GWP_ATD':
    case 'GWP_DTD':
      return '[S]';
    case 'GWP_SENDER_ID_BITS':
      return registration && senderNote(c) ? 'S' : '-';
    case 'SA_KEY':
      // Note 2 and Section 4.5.2 (*): several SA_KEYs only for the Rekey SA,
      // only in GSA_REKEY, and only with a key management method that can
      // exclude members (a key tree).
      return rekeySa && c.exchange === ExchangeType.GSA_REKEY && c.keyTree ? 'S[M]' : 'S';
    case 'WRAP_KEY':
      if (!multicast) return '-';
      return registration && c.keyTree ? 'S[M]' : '[M]'; // note 3
    case 'AUTH_KEY':
      if (!multicast || !signatures) return '-'; // note 4
      return registration ? 'S' : '[S]';
    case 'GM_SENDER_ID':
      return registration && senderNote(c) ? 'S[M]' : '-';
  }
}

const REQUIREMENT: Record<Occurrence, string> = {
  S: 'must appear exactly once',
  '[S]': 'must appear at most once',
  '[M]': '',
  'S[M]': 'must appear at least once',
  '-': 'must not appear',
};

/** The rule broken by `count` instances, or undefined if `count` satisfies `o`. */
export function occurrenceRule(
  attribute: TableAttribute,
  o: Occurrence,
  count: number,
  exchange: number,
): string | undefined {
  const ok =
    o === '[M]' ||
    (o === 'S' && count === 1) ||
    (o === '[S]' && count <= 1) ||
    (o === 'S[M]' && count >= 1) ||
    (o === '-' && count === 0);
  if (ok) return undefined;
  return `RFC9838 5: ${attribute} ${REQUIREMENT[o]} in ${nameOf(ExchangeType, exchange)}`;
}

/** Everything the validator needs to know beyond the payloads themselves. */
export interface ValidationContext extends TableConditions {
  /** Sender-IDs the GM asked for in N(GROUP_SENDER); 0 or absent means one (Section 2.5.1). */
  readonly senderIdsRequested?: number;
}
