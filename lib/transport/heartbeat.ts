/** Something probed for liveness at a fixed interval. */
export interface HeartbeatMember {
  beat(): void;
}

/**
 * One timer per interval for every connection that uses it, instead of a
 * timer per connection: 10,000 idle WebSockets cost one interval, not 10,000.
 * A member joining mid-interval is first probed at the next tick.
 */
class HeartbeatGroup {
  private readonly members = new Set<HeartbeatMember>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly interval: number) {}

  add(member: HeartbeatMember): void {
    this.members.add(member);
    if (this.timer) return;
    this.timer = setInterval(() => {
      for (const m of this.members) m.beat();
    }, this.interval);
    // liveness probes must not keep a process alive on their own
    this.timer.unref();
  }

  remove(member: HeartbeatMember): void {
    this.members.delete(member);
    if (this.members.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }
}

const groups = new Map<number, HeartbeatGroup>();

/** Starts probing `member` every `interval` ms; returns the function that stops it. */
export function joinHeartbeat(interval: number, member: HeartbeatMember): () => void {
  let group = groups.get(interval);
  if (!group) groups.set(interval, (group = new HeartbeatGroup(interval)));
  group.add(member);
  return () => group.remove(member);
}
