import type { ChannelKind } from "./generated/messages.js";

/** Channel names (contract §7), UUIDs in lower case as the hub requires. */
export const channels = {
  calls: (tenantId: string) => `tenant:${lower(tenantId)}:calls` as const,
  call: (tenantId: string, callId: string) => `tenant:${lower(tenantId)}:call:${lower(callId)}` as const,
  campaign: (tenantId: string, campaignId: string) =>
    `tenant:${lower(tenantId)}:campaign:${lower(campaignId)}` as const,
  billing: (tenantId: string) => `tenant:${lower(tenantId)}:billing` as const,
  ai: (tenantId: string, userId: string) => `tenant:${lower(tenantId)}:user:${lower(userId)}:ai` as const,
};

/** The kind of a channel name, inferred from the name's shape. */
export type KindOf<C extends string> = C extends `tenant:${string}:user:${string}:ai`
  ? "ai"
  : C extends `tenant:${string}:campaign:${string}`
    ? "campaign"
    : C extends `tenant:${string}:call:${string}`
      ? "call"
      : C extends `tenant:${string}:calls`
        ? "calls"
        : C extends `tenant:${string}:billing`
          ? "billing"
          : ChannelKind;

/** The kind of a channel name at run time, or null for a name the hub would refuse. */
export function channelKind(channel: string): ChannelKind | null {
  const m = /^tenant:[0-9a-f-]{36}:(calls|billing|call:[0-9a-f-]{36}|campaign:[0-9a-f-]{36}|user:[0-9a-f-]{36}:ai)$/.exec(
    channel,
  );
  if (!m) return null;
  const rest = m[1];
  if (rest.endsWith(":ai")) return "ai";
  return rest.split(":")[0] as ChannelKind;
}

function lower(id: string): string {
  return id.toLowerCase();
}
