import Foundation

// Short names for the AVA extension protocol's generated types, and its pixel formats in FFmpeg's
// names, for both programs (the generated names carry the whole proto package).

public typealias AVAExtension = Microsoft_Azure_Media_LiveVideoAnalytics_Extensibility_Grpc_V1_MediaGraphExtension
public typealias AVAMessage = Microsoft_Azure_Media_LiveVideoAnalytics_Extensibility_Grpc_V1_MediaStreamMessage
public typealias AVADescriptor = Microsoft_Azure_Media_LiveVideoAnalytics_Extensibility_Grpc_V1_MediaStreamDescriptor
public typealias AVASample = Microsoft_Azure_Media_LiveVideoAnalytics_Extensibility_Grpc_V1_MediaSample
public typealias AVASampleFormat = Microsoft_Azure_Media_LiveVideoAnalytics_Extensibility_Grpc_V1_VideoFrameSampleFormat
public typealias AVAInference = Microsoft_Azure_Media_LiveVideoAnalytics_Extensibility_Grpc_V1_Inference
public typealias AVARectangle = Microsoft_Azure_Media_LiveVideoAnalytics_Extensibility_Grpc_V1_Rectangle

extension AVASampleFormat.PixelFormat {
  /// The pixel format's FFmpeg name, nil for NONE and unknown values.
  public var ffmpegName: String? {
    switch self {
    case .yuv420P: "yuv420p"
    case .rgb565Be: "rgb565be"
    case .rgb565Le: "rgb565le"
    case .rgb555Be: "rgb555be"
    case .rgb555Le: "rgb555le"
    case .rgb24: "rgb24"
    case .bgr24: "bgr24"
    case .argb: "argb"
    case .rgba: "rgba"
    case .abgr: "abgr"
    case .bgra: "bgra"
    case .none, .UNRECOGNIZED: nil
    }
  }

  public init?(ffmpegName: String) {
    let all: [Self] = [.yuv420P, .rgb565Be, .rgb565Le, .rgb555Be, .rgb555Le, .rgb24, .bgr24, .argb, .rgba, .abgr, .bgra]
    guard let match = all.first(where: { $0.ffmpegName == ffmpegName }) else { return nil }
    self = match
  }
}

extension AVASampleFormat.Encoding {
  /// The FFmpeg decoder (and encoder) of the encoding; RAW is `rawvideo`.
  public var codecName: String? {
    switch self {
    case .raw: "rawvideo"
    case .jpg: "mjpeg"
    case .png: "png"
    case .bmp: "bmp"
    case .UNRECOGNIZED: nil
    }
  }

  public var name: String {
    switch self {
    case .raw: "RAW"
    case .jpg: "JPG"
    case .png: "PNG"
    case .bmp: "BMP"
    case .UNRECOGNIZED(let value): "encoding \(value)"
    }
  }
}
