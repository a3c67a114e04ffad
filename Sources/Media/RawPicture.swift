import CFFmpeg
import Foundation

/// Layout facts about raw (uncompressed) pictures, for ingests that receive pixels rather than packets.
public enum RawPicture {
  /// Bytes in one packed row of a single-plane pixel format (bgr24: 3 × width), or nil if the format
  /// is unknown or has several planes.
  public static func packedRowBytes(pixelFormat: String, width: Int) -> Int? {
    let format = av_get_pix_fmt(pixelFormat)
    guard format != AV_PIX_FMT_NONE, av_pix_fmt_count_planes(format) == 1 else { return nil }
    let bytes = av_image_get_linesize(format, Int32(width), 0)
    return bytes > 0 ? Int(bytes) : nil
  }

  /// Bytes of a whole packed picture of any pixel format (yuv420p included), or nil if unknown.
  public static func packedBytes(pixelFormat: String, width: Int, height: Int) -> Int? {
    let format = av_get_pix_fmt(pixelFormat)
    guard format != AV_PIX_FMT_NONE else { return nil }
    let bytes = av_image_get_buffer_size(format, Int32(width), Int32(height), 1)
    return bytes > 0 ? Int(bytes) : nil
  }

  /// The rows of a single-plane picture whose rows are `stride` bytes apart, without the padding
  /// (one copy). The same Data when it is already packed.
  public static func packed(_ data: Data, rowBytes: Int, height: Int, stride: Int) -> Data {
    guard stride > rowBytes else { return data }
    var packed = Data(count: rowBytes * height)
    packed.withUnsafeMutableBytes { (target: UnsafeMutableRawBufferPointer) in
      data.withUnsafeBytes { (source: UnsafeRawBufferPointer) in
        for row in 0..<height {
          let from = source.baseAddress! + row * stride
          (target.baseAddress! + row * rowBytes).copyMemory(from: from, byteCount: rowBytes)
        }
      }
    }
    return packed
  }
}
