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
export function decodeToken(token: string): TokenClaims | null {
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const claims: unknown = JSON.parse(new TextDecoder().decode(bytes));
    return claims !== null && typeof claims === "object" && !Array.isArray(claims)
      ? (claims as TokenClaims)
      : null;
  } catch {
    return null;
  }
}

/** The token's `exp` in ms since the epoch, or `null` if it has none. */
export function tokenExpiryMs(token: string): number | null {
  const exp = decodeToken(token)?.exp;
  return typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : null;
}

/** Whether the token says it may see the billing channel (role or capability). */
export function canSeeBilling(claims: TokenClaims | null): boolean {
  if (!claims) return false;
  return (
    claims.role === "owner" ||
    claims.role === "admin" ||
    (Array.isArray(claims.caps) && claims.caps.includes("billing.view"))
  );
}
