import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { deflateSync } from 'node:zlib';

/** Small real files the stand-in serves as model outputs. */
export interface OutputAsset {
  name: string;
  contentType: string;
  bytes: Buffer;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/** A valid RGB PNG (a diagonal orange-to-violet gradient), built with zlib. */
function makePng(width = 64, height = 64): Buffer {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    raw[row] = 0; // filter: none
    for (let x = 0; x < width; x++) {
      const t = (x + y) / (width + height - 2);
      raw[row + 1 + x * 3] = Math.round(255 - 120 * t);
      raw[row + 2 + x * 3] = Math.round(140 - 100 * t);
      raw[row + 3 + x * 3] = Math.round(40 + 200 * t);
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: truecolour
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** The committed files live in src/.../assets; a compiled build (dist/) looks back at src/. */
function assetsDir(): string {
  const candidates = [
    path.join(__dirname, 'assets'),
    path.resolve(__dirname, '../../../../../src/providers/replicate/standin/assets'),
  ];
  const found = candidates.find((d) => existsSync(path.join(d, 'output.mp4')));
  if (!found) throw new Error(`Stand-in assets not found (looked in ${candidates.join(', ')})`);
  return found;
}

let cache: Record<'png' | 'jpg' | 'mp4', OutputAsset> | null = null;

export function outputAssets(): Record<'png' | 'jpg' | 'mp4', OutputAsset> {
  if (!cache) {
    const dir = assetsDir();
    cache = {
      png: { name: 'output.png', contentType: 'image/png', bytes: makePng() },
      jpg: { name: 'output.jpg', contentType: 'image/jpeg', bytes: readFileSync(path.join(dir, 'output.jpg')) },
      mp4: { name: 'output.mp4', contentType: 'video/mp4', bytes: readFileSync(path.join(dir, 'output.mp4')) },
    };
  }
  return cache;
}
