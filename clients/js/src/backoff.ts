/** How long to wait between connection attempts. */
export interface BackoffOptions {
  /** The cap of the first retry, in ms. */
  initialMs: number;
  /** The cap never grows past this, in ms. */
  maxMs: number;
  /** Growth of the cap per failed attempt. */
  factor: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 15_000, factor: 2 };

/**
 * The delay before retry number `attempt` (0 for the first retry): a cap that
 * grows exponentially up to `maxMs`, and a delay drawn uniformly from the upper
 * half of it. The random half spreads the reconnects of every browser a hub
 * restart dropped at once; the fixed half keeps a retry from coming back
 * immediately, so the delay is always within `[cap / 2, cap]`.
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const cap = backoffCap(attempt, options);
  return Math.round(cap / 2 + (random() * cap) / 2);
}

/** The largest delay `backoffDelay` can return for `attempt`. */
export function backoffCap(attempt: number, options: BackoffOptions = DEFAULT_BACKOFF): number {
  const grown = options.initialMs * Math.pow(options.factor, Math.max(0, attempt));
  return Math.min(options.maxMs, Number.isFinite(grown) ? grown : options.maxMs);
}
