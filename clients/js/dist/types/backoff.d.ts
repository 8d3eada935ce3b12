/** How long to wait between connection attempts. */
export interface BackoffOptions {
    /** The cap of the first retry, in ms. */
    initialMs: number;
    /** The cap never grows past this, in ms. */
    maxMs: number;
    /** Growth of the cap per failed attempt. */
    factor: number;
}
export declare const DEFAULT_BACKOFF: BackoffOptions;
/**
 * The delay before retry number `attempt` (0 for the first retry): a cap that
 * grows exponentially up to `maxMs`, and a delay drawn uniformly from the upper
 * half of it. The random half spreads the reconnects of every browser a hub
 * restart dropped at once; the fixed half keeps a retry from coming back
 * immediately, so the delay is always within `[cap / 2, cap]`.
 */
export declare function backoffDelay(attempt: number, options?: BackoffOptions, random?: () => number): number;
/** The largest delay `backoffDelay` can return for `attempt`. */
export declare function backoffCap(attempt: number, options?: BackoffOptions): number;
