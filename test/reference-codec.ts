/**
 * A deliberately naive codec written straight from the field table in
 * proto/README.md, field by field with Buffer's own readers. The real codec
 * is tested against it.
 */
export const FIELD_TABLE: Array<[name: string, offset: number, bytes: 1 | 2 | 4]> = [
  ["version", 0, 1],
  ["type", 1, 1],
  ["flags", 2, 2],
  ["jobId", 4, 2],
  ["workerId", 6, 2],
  ["fanIn", 8, 2],
  ["elementCount", 10, 2],
  ["psn", 12, 4],
  ["aggregatorIndex", 16, 4],
  ["bitmap", 20, 4],
  ["scaleBits", 24, 1],
  ["regionEpoch", 25, 1],
  ["destination", 26, 2],
  ["reserved", 28, 4],
];

export function naiveEncode(fields: Record<string, number>, payload: number[]): Buffer {
  const buf = Buffer.alloc(32 + payload.length * 4);
  for (const [name, offset, bytes] of FIELD_TABLE) {
    buf.writeUIntLE(fields[name] ?? 0, offset, bytes);
  }
  payload.forEach((v, i) => {
    buf.writeInt32LE(v, 32 + i * 4);
  });
  return buf;
}

export function naiveDecode(buf: Buffer): { fields: Record<string, number>; payload: number[] } {
  const fields: Record<string, number> = {};
  for (const [name, offset, bytes] of FIELD_TABLE) fields[name] = buf.readUIntLE(offset, bytes);
  const payload: number[] = [];
  for (let at = 32; at + 4 <= buf.length; at += 4) payload.push(buf.readInt32LE(at));
  return { fields, payload };
}
