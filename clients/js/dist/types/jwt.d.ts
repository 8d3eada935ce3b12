/** The claims of a hub token (contract §7), as the client reads them. */
export interface TokenClaims {
    sub?: string;
    tenant_id?: string;
    role?: "owner" | "admin" | "member" | "viewer";
    /** Seconds since the Unix epoch. */
    exp?: number;
    caps?: string[];
    [claim: string]: unknown;
}
/**
 * The payload of a JWT, decoded without verifying it: the client only reads
 * what the token says about itself (its expiry, its tenant), the hub verifies.
 * `null` when the token is not a readable JWT.
 */
export declare function decodeToken(token: string): TokenClaims | null;
/** The token's `exp` in ms since the epoch, or `null` if it has none. */
export declare function tokenExpiryMs(token: string): number | null;
/** Whether the token says it may see the billing channel (role or capability). */
export declare function canSeeBilling(claims: TokenClaims | null): boolean;
