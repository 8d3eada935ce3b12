/**
 * The ids of the last `capacity` messages of one channel. A redelivered
 * message (a relay republish, a resume that overlaps what was already seen)
 * carries the id it had the first time, and repeats come soon after the
 * original, so a window of recent ids is enough to drop them.
 */
export class RecentIds {
  private readonly ids = new Set<string>();
  private readonly order: string[] = [];
  private next = 0;

  constructor(private readonly capacity: number) {}

  /** Records `id`; false when it was already among the recent ones. */
  add(id: string): boolean {
    if (this.ids.has(id)) return false;
    if (this.order.length < this.capacity) {
      this.order.push(id);
    } else {
      this.ids.delete(this.order[this.next]);
      this.order[this.next] = id;
      this.next = (this.next + 1) % this.capacity;
    }
    this.ids.add(id);
    return true;
  }

  get size(): number {
    return this.ids.size;
  }
}
