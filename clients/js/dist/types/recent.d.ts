/**
 * The ids of the last `capacity` messages of one channel. A redelivered
 * message (a relay republish, a resume that overlaps what was already seen)
 * carries the id it had the first time, and repeats come soon after the
 * original, so a window of recent ids is enough to drop them.
 */
export declare class RecentIds {
    private readonly capacity;
    private readonly ids;
    private readonly order;
    private next;
    constructor(capacity: number);
    /** Records `id`; false when it was already among the recent ones. */
    add(id: string): boolean;
    get size(): number;
}
