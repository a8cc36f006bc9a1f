/** The seed of a test's randomness: INA_TEST_SEED if set, else `fallback`. Printed so a failure can be replayed. */
export function testSeed(name: string, fallback: number): number {
  const fromEnv = process.env.INA_TEST_SEED;
  const seed = fromEnv === undefined ? fallback : Number(fromEnv) >>> 0;
  console.log(`${name}: seed ${seed} (replay with INA_TEST_SEED=${seed})`);
  return seed;
}
