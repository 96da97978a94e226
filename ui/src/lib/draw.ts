// Drawing pictures on a canvas. RGBA goes straight in with putImageData; JPEG is decoded by
// the browser (createImageBitmap), which is asynchronous, so the caller must not start a
// second decode for the same canvas while one runs.

import type { Picture } from './picture';

function fit(canvas: HTMLCanvasElement, width: number, height: number) {
  // Resizing clears the canvas, so only do it when the picture size really changed.
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
}

/** Draws one picture; resolves false when it could not be drawn (bad JPEG, no context). */
export async function drawPicture(canvas: HTMLCanvasElement, picture: Picture): Promise<boolean> {
  const ctx = canvas.getContext('2d');
  if (!ctx) return false;
  if (picture.kind === 'rgba') {
    fit(canvas, picture.width, picture.height);
    // ImageData wants an ArrayBuffer-backed array; the parsed view already is one.
    const data = picture.data as Uint8ClampedArray<ArrayBuffer>;
    ctx.putImageData(new ImageData(data, picture.width, picture.height), 0, 0);
    return true;
  }
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(new Blob([picture.data as Uint8Array<ArrayBuffer>], { type: 'image/jpeg' }));
  } catch {
    return false;
  }
  fit(canvas, bitmap.width, bitmap.height);
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  return true;
}
