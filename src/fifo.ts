// A first-in first-out queue on an array with a moving head: O(1) shift, compacted as it drains.

/** The queue of the writer and of event listeners. */
export class Fifo<T> {
  #items: T[] = [];
  #head = 0;

  /** How many items are queued. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  /** The first item, left in the queue. */
  peek(): T | undefined {
    return this.#items[this.#head];
  }

  /** Remove and return the first item. */
  shift(): T | undefined {
    const items = this.#items;
    if (this.#head === items.length) return undefined;
    const item = items[this.#head]!;
    this.#head++;
    if (this.#head === items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= items.length) {
      // Drop the consumed front once it is most of the array.
      this.#items = items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Keep only the items `keep` accepts, in order. */
  retain(keep: (item: T) => boolean): void {
    this.#items = this.#items.slice(this.#head).filter(keep);
    this.#head = 0;
  }

  /** Remove and return every item, oldest first. */
  takeAll(): T[] {
    const items = this.#head === 0 ? this.#items : this.#items.slice(this.#head);
    this.#items = [];
    this.#head = 0;
    return items;
  }
}
