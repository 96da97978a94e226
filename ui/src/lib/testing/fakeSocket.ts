// A WebSocket for tests: records what the page sends; the test opens it, delivers messages
// and drops it as the shell would. Only tests import it.

export class FakeSocket {
  static readonly OPEN = 1;
  static readonly CLOSED = 3;
  /** Every socket made, oldest first. */
  static all: FakeSocket[] = [];
  readyState = 0;
  binaryType = 'blob';
  sent: ArrayBuffer[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((e: { data: unknown }) => void) | null = null;
  onclose: (() => void) | null = null;

  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }

  send(data: ArrayBuffer) {
    this.sent.push(data);
  }

  close() {
    this.readyState = FakeSocket.CLOSED;
    this.onclose?.();
  }

  // The test's side.
  open() {
    this.readyState = FakeSocket.OPEN;
    this.onopen?.();
  }

  deliver(data: unknown) {
    this.onmessage?.({ data });
  }

  /** The connection went away (not closed by the page). */
  drop() {
    this.close();
  }
}
