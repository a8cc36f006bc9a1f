import { MAX_FAN_IN } from "../proto/wire.js";
import { UsageError } from "../runtime/cli.js";

/**
 * The rank and size a parallel launcher gives each process it starts, so that
 * `mpirun -np 4 ina-worker --control URL --job ID` (or `srun`) runs one job's
 * workers with ids 0 .. 3 on whatever machines the launcher picked.
 *
 * Checked in this order: Open MPI's own variables first, since an mpirun
 * inside a Slurm allocation inherits the allocation's SLURM_PROCID; then PMI
 * (MPICH's and Intel MPI's Hydra, srun --mpi=pmi2), then Slurm's.
 */
export const LAUNCHERS = [
  { launcher: "Open MPI", rank: "OMPI_COMM_WORLD_RANK", size: "OMPI_COMM_WORLD_SIZE" },
  { launcher: "PMI", rank: "PMI_RANK", size: "PMI_SIZE" },
  { launcher: "Slurm", rank: "SLURM_PROCID", size: "SLURM_NTASKS" },
] as const;

export interface LauncherRank {
  launcher: (typeof LAUNCHERS)[number]["launcher"];
  /** the variables read, e.g. OMPI_COMM_WORLD_RANK and OMPI_COMM_WORLD_SIZE */
  rankVariable: string;
  sizeVariable: string;
  rank: number;
  size: number;
}

function integerVariable(env: NodeJS.ProcessEnv, name: string, min: number, max: number): number {
  const text = env[name];
  if (text === undefined) {
    throw new UsageError(`${name}: not set, though the launcher set its rank variable`);
  }
  const value = /^\d{1,6}$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
  if (!(value >= min && value <= max)) {
    throw new UsageError(`${name}: expected an integer ${min} .. ${max}, got "${text}"`);
  }
  return value;
}

/**
 * The first launcher whose rank variable is set, with its rank and size; null
 * when none is. A malformed or out-of-range value is a UsageError naming the
 * variable.
 */
export function launcherRank(env: NodeJS.ProcessEnv): LauncherRank | null {
  for (const l of LAUNCHERS) {
    if (env[l.rank] === undefined) continue;
    const size = integerVariable(env, l.size, 1, MAX_FAN_IN);
    const rank = integerVariable(env, l.rank, 0, size - 1);
    return { launcher: l.launcher, rankVariable: l.rank, sizeVariable: l.size, rank, size };
  }
  return null;
}
