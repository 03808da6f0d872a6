/** Where the live ledger the tests call is: set by tests/e2e/test_node_client.py, which starts a real server. */

export const target = process.env["LEDGER_TARGET"] ?? "";
/** An admin key (the server's first one) and a till's key made with `ledger keys create --role pos`. */
export const adminKey = process.env["LEDGER_ADMIN_KEY"] ?? "";
export const posKey = process.env["LEDGER_POS_KEY"] ?? "";
export const programId = process.env["LEDGER_PROGRAM"] ?? "little_sprout";

/** The `skip` option of every test: they need a live server. */
export const skip: string | false =
  target && adminKey && posKey
    ? false
    : "no live ledger: set LEDGER_TARGET, LEDGER_ADMIN_KEY and LEDGER_POS_KEY (tests/e2e/test_node_client.py does)";

let counter = 0;
/** An id no other test run uses. */
export function unique(tag: string): string {
  counter += 1;
  return `${tag}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}

/** Nothing waits: sleeps are recorded, jitter is fixed, the clock moves only by what was slept. */
export class FakeTime {
  now = 0;
  readonly slept: number[] = [];
  constructor(readonly jitterValue = 0.5) {}
  sleep = async (ms: number): Promise<void> => {
    this.slept.push(ms);
    this.now += ms;
  };
  jitter = (): number => this.jitterValue;
  clock = (): number => this.now;
}
