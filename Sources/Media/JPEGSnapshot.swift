import Foundation

/// One picture as a JPEG, for a web page's preview: packed bgr24 bytes through FFmpeg's rawvideo
/// decoder, scaled (and converted to yuvj420p) and encoded by its mjpeg encoder at quantizer 2 (what
/// `ffmpeg -q:v 2` gives). A few milliseconds for
/// 720p; made per request, so nothing is held while nobody watches.
public enum JPEGSnapshot {
  /// - Parameter maxWidth: larger pictures are scaled down to this width, keeping the aspect ratio.
  public static func encode(bgr24: Data, width: Int, height: Int, maxWidth: Int = 640) throws -> Data {
    let scale = width > maxWidth ? Double(maxWidth) / Double(width) : 1
    // Even sizes: yuvj420p subsamples chroma by two.
    let outWidth = max(2, Int(Double(width) * scale) & ~1)
    let outHeight = max(2, Int(Double(height) * scale) & ~1)
    let decoder = try VideoDecoder(
      codecName: "rawvideo", width: width, height: height, pixelFormat: "bgr24", extradata: Data(),
      timeBase: (1, 1000))
    let scaler = try PictureScaler(width: outWidth, height: outHeight, pixelFormat: "yuvj420p")
    let encoder = try VideoEncoder(
      codecName: "mjpeg", width: outWidth, height: outHeight, pixelFormat: "yuvj420p", frameRate: 1, gop: 1,
      options: ["qmin": "2", "qmax": "2"])
    var jpeg: Data?
    try decoder.decode(bgr24, pts: 0, dts: 0, isKeyframe: true) { picture in
      let packets = try scaler.scale(picture) { try encoder.encode($0, pts: 0) }
      jpeg = packets.first?.data
    }
    if jpeg == nil { jpeg = try encoder.flush().first?.data }
    guard let jpeg else { throw MediaError(operation: "encode JPEG", message: "the encoder gave no picture") }
    return jpeg
  }
}
