import CFFmpeg
import Foundation

/// Converts pictures to packed bgr24 (rows of width × 3 bytes, no padding), as Chrysalis consumers expect.
/// Keeps one scaler for the last size and format seen. One thread at a time.
public final class PictureConverter {
  private var scaler: OpaquePointer?
  private var key: (width: Int32, height: Int32, format: Int32) = (0, 0, -1)

  public init() {}

  deinit { sws_freeContext(scaler) }

  /// The picture as packed bgr24: the one write of the output bytes, straight into the returned Data.
  public func bgr24(_ picture: DecodedPicture) throws(MediaError) -> Data {
    let frame = picture.frame
    let width = frame.pointee.width
    let height = frame.pointee.height
    let format = frame.pointee.format
    if scaler == nil || key != (width, height, format) {
      sws_freeContext(scaler)
      // Bicubic, as the ffmpeg command line uses by default, so our pixels match its output.
      scaler = sws_getContext(
        width, height, AVPixelFormat(rawValue: format), width, height, AV_PIX_FMT_BGR24,
        Int32(SWS_BICUBIC), nil, nil, nil)
      key = (width, height, format)
    }
    guard let scaler else {
      throw MediaError(operation: "convert to bgr24", message: "no scaler for \(width)x\(height) format \(format)")
    }
    let stride = Int(width) * 3
    let count = stride * Int(height)
    // Uninitialised on purpose: swscale writes every byte, and zero-filling megabytes per frame first
    // (as Data(count:) does) cost about a tenth of replay decoding.
    guard let bytes = malloc(count) else {
      throw MediaError(operation: "convert to bgr24", message: "out of memory for \(count) bytes")
    }
    var planes: [UnsafeMutablePointer<UInt8>?] = [bytes.assumingMemoryBound(to: UInt8.self), nil, nil, nil]
    var strides: [Int32] = [Int32(stride), 0, 0, 0]
    let rows = sws_scale(scaler, cff_frame_data(frame), cff_frame_linesize(frame), 0, height, &planes, &strides)
    let output = Data(bytesNoCopy: bytes, count: count, deallocator: .free)
    if rows != height {
      throw MediaError(operation: "convert to bgr24", message: "converted \(rows) of \(height) rows")
    }
    return output
  }
}
