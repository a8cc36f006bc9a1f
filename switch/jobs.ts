import type { JobConfig } from "../proto/config.js";
import { MAX_FAN_IN } from "../proto/wire.js";

/** Per-job counters, plain numbers bumped on the data path. */
export interface JobCounters {
  contributions: number;
  /** contributions that carried the resend flag */
  resends: number;
  aggregationsCompleted: number;
  /** results sent again to a worker that retransmitted after completion */
  resultsReplayed: number;
  /** aggregators taken over from a finished PSN by a new one */
  takeovers: number;
  drops: number;
  bytesIn: number;
}

/** A job installed in the switch: its rule (mode, fan-in, region) and its hosts. */
export class JobState {
  readonly id: number;
  readonly mode: JobConfig["mode"];
  readonly fanIn: number;
  readonly offset: number;
  readonly size: number;
  readonly window: number;
  /** bitmap with one bit per worker: the value of a complete aggregation */
  readonly fullBitmap: number;
  /** learned from each worker's packets; -1 until the worker has sent one */
  readonly hostPort = new Int32Array(MAX_FAN_IN).fill(-1);
  readonly hostAddress: string[] = new Array(MAX_FAN_IN).fill("");
  readonly counters: JobCounters = {
    contributions: 0,
    resends: 0,
    aggregationsCompleted: 0,
    resultsReplayed: 0,
    takeovers: 0,
    drops: 0,
    bytesIn: 0,
  };

  constructor(config: JobConfig) {
    this.id = config.id;
    this.mode = config.mode;
    this.fanIn = config.fanIn;
    this.offset = config.offset;
    this.size = config.size;
    this.window = config.window;
    this.fullBitmap = config.fanIn === 32 ? 0xffffffff : (1 << config.fanIn) - 1;
  }

  /** Remembers where worker `workerId` sends from, so results can reach it. */
  learnHost(workerId: number, port: number, address: string): void {
    if (this.hostPort[workerId] !== port || this.hostAddress[workerId] !== address) {
      this.hostPort[workerId] = port;
      this.hostAddress[workerId] = address;
    }
  }
}
