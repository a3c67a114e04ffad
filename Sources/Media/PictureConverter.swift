import CFFmpeg
import Foundation

/// Converts pictures to packed pixels in one step (rows with no padding, planes one after another):
/// bgr24 at the picture's own size, as Chrysalis consumers expect, or any size and pixel format an
/// edge protocol asks for (the minimal protocol's gray or bgr24, AVA's RAW formats). Keeps one scaler
/// for the last source and target seen. One thread at a time.
public final class PictureConverter {
  private var scaler: OpaquePointer?
  private let buffers = PictureBuffers()
  private var key: (width: Int32, height: Int32, format: Int32, toWidth: Int32, toHeight: Int32, toFormat: Int32) =
    (0, 0, -1, 0, 0, -1)

  public init() {}

  deinit { sws_freeContext(scaler) }

  /// The picture as packed bgr24: the one write of the output bytes, straight into the returned Data.
  public func bgr24(_ picture: DecodedPicture) throws(MediaError) -> Data {
    try packed(picture, width: picture.width, height: picture.height, format: AV_PIX_FMT_BGR24, name: "bgr24")
  }

  /// The picture scaled to `width`×`height` and converted to `pixelFormat` (FFmpeg's name), packed.
  public func packed(_ picture: DecodedPicture, width: Int, height: Int, pixelFormat: String) throws(MediaError) -> Data {
    let format = av_get_pix_fmt(pixelFormat)
    guard format != AV_PIX_FMT_NONE else {
      throw MediaError(operation: "convert", message: "unknown pixel format \(pixelFormat)")
    }
    return try packed(picture, width: width, height: height, format: format, name: pixelFormat)
  }

  private func packed(
    _ picture: DecodedPicture, width: Int, height: Int, format: AVPixelFormat, name: String
  ) throws(MediaError) -> Data {
    let frame = picture.frame
    let wanted = (
      frame.pointee.width, frame.pointee.height, frame.pointee.format, Int32(width), Int32(height), format.rawValue
    )
    if scaler == nil || key != wanted {
      sws_freeContext(scaler)
      // Bicubic, as the ffmpeg command line uses by default, so our pixels match its output.
      scaler = sws_getContext(
        wanted.0, wanted.1, AVPixelFormat(rawValue: wanted.2), wanted.3, wanted.4, format, Int32(SWS_BICUBIC), nil,
        nil, nil)
      key = wanted
    }
    guard let scaler else {
      throw MediaError(
        operation: "convert to \(name)", message: "no scaler from \(wanted.0)x\(wanted.1) format \(wanted.2) to \(width)x\(height)")
    }
    let count = Int(av_image_get_buffer_size(format, Int32(width), Int32(height), 1))
    guard count > 0 else {
      throw MediaError(operation: "convert to \(name)", message: "no picture of \(width)x\(height) in \(name)")
    }
    // Uninitialised on purpose: swscale writes every byte, and zero-filling megabytes per frame first
    // (as Data(count:) does) cost about a tenth of replay decoding. Reused: see PictureBuffers.
    let output = try buffers.data(count: count) { bytes throws(MediaError) in
      var planes: [UnsafeMutablePointer<UInt8>?] = [nil, nil, nil, nil]
      var strides: [Int32] = [0, 0, 0, 0]
      av_image_fill_arrays(&planes, &strides, bytes.assumingMemoryBound(to: UInt8.self), format, Int32(width), Int32(height), 1)
      let rows = sws_scale(scaler, cff_frame_data(frame), cff_frame_linesize(frame), 0, wanted.1, &planes, &strides)
      if rows != Int32(height) {
        throw MediaError(operation: "convert to \(name)", message: "converted \(rows) of \(height) rows")
      }
    }
    guard let output else {
      throw MediaError(operation: "convert to \(name)", message: "out of memory for \(count) bytes")
    }
    return output
  }
}
