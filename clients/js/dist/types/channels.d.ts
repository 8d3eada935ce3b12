import type { ChannelKind } from "./generated/messages.js";
/** Channel names (contract §7), UUIDs in lower case as the hub requires. */
export declare const channels: {
    calls: (tenantId: string) => `tenant:${string}:calls`;
    call: (tenantId: string, callId: string) => `tenant:${string}:call:${string}`;
    campaign: (tenantId: string, campaignId: string) => `tenant:${string}:campaign:${string}`;
    billing: (tenantId: string) => `tenant:${string}:billing`;
    ai: (tenantId: string, userId: string) => `tenant:${string}:user:${string}:ai`;
};
/** The kind of a channel name, inferred from the name's shape. */
export type KindOf<C extends string> = C extends `tenant:${string}:user:${string}:ai` ? "ai" : C extends `tenant:${string}:campaign:${string}` ? "campaign" : C extends `tenant:${string}:call:${string}` ? "call" : C extends `tenant:${string}:calls` ? "calls" : C extends `tenant:${string}:billing` ? "billing" : ChannelKind;
/** The kind of a channel name at run time, or null for a name the hub would refuse. */
export declare function channelKind(channel: string): ChannelKind | null;
