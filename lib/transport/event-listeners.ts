/**
 * A minimal typed listener registry. Unlike EventEmitter, an `error` with no
 * listener is not thrown: the server and client log errors themselves.
 */
export class EventListeners<Events extends Record<string, (...args: any[]) => void>> {
  private readonly listeners = new Map<keyof Events, Set<Events[keyof Events]>>();

  on<K extends keyof Events>(event: K, callback: Events[K]): void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(callback);
  }

  emit<K extends keyof Events>(event: K, ...args: Parameters<Events[K]>): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const callback of set) callback(...args);
  }

  clear(): void {
    this.listeners.clear();
  }
}
