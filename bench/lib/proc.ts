/** Reads a process's CPU time and memory from /proc (Linux), so server and generator costs are kept apart. */
import { readFileSync } from 'node:fs';

const CLK_TCK = 100; // getconf CLK_TCK on Linux x86_64

export interface ProcSample {
  /** user + system CPU seconds since the process started. */
  cpuSec: number;
  /** The user-space and kernel parts of cpuSec. */
  userSec: number;
  sysSec: number;
  /** Resident set size now, in KiB. */
  rssKiB: number;
  /** Peak resident set size (VmHWM), in KiB. */
  hwmKiB: number;
}

export function sampleProc(pid: number): ProcSample {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) may contain spaces; everything after the last ')' is space-separated from field 3.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /VmRSS:\s+(\d+)/.exec(status);
    const hwm = /VmHWM:\s+(\d+)/.exec(status);
    return {
      cpuSec: (utime + stime) / CLK_TCK,
      userSec: utime / CLK_TCK,
      sysSec: stime / CLK_TCK,
      rssKiB: rss ? Number(rss[1]) : 0,
      hwmKiB: hwm ? Number(hwm[1]) : 0,
    };
  } catch {
    return { cpuSec: NaN, userSec: NaN, sysSec: NaN, rssKiB: NaN, hwmKiB: NaN };
  }
}

/** Sums CPU and RSS over several processes (peak RSS is summed too: an upper bound of the joint peak). */
export function sampleProcs(pids: number[]): ProcSample {
  const out: ProcSample = { cpuSec: 0, userSec: 0, sysSec: 0, rssKiB: 0, hwmKiB: 0 };
  for (const pid of pids) {
    const s = sampleProc(pid);
    out.cpuSec += s.cpuSec;
    out.userSec += s.userSec;
    out.sysSec += s.sysSec;
    out.rssKiB += s.rssKiB;
    out.hwmKiB += s.hwmKiB;
  }
  return out;
}
