import Foundation
import RelayCore
import RelayProtocol
import SwiftProtobuf

/// An ack's inference results in AVA's inference metadata shape, one JSON object per line:
/// `{"timestamp": …, "inferences": [{"type", "subtype", "inferenceId", "relatedInferences",
/// "entity" | "classification" | "motion" | "text" | "event" | "other", …}]}`, boxes as {l, t, w, h}.
public enum InferenceJSON {
  public static func line(_ results: InferenceResults) -> String {
    let object: [String: Any] = ["timestamp": results.timestamp, "inferences": results.inferences.map(item)]
    let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    return String(decoding: data, as: UTF8.self)
  }

  static func item(_ inference: AVAInference) -> [String: Any] {
    var item: [String: Any] = [
      "type": typeName(inference.type), "subtype": inference.subtype, "inferenceId": inference.inferenceID,
      "relatedInferences": inference.relatedInferences,
    ]
    if let (key, value) = valueJSON(inference) { item[key] = value }
    if !inference.sequenceID.isEmpty { item["sequenceId"] = inference.sequenceID }
    if !inference.extensions.isEmpty { item["extensions"] = inference.extensions }
    return item
  }

  static func typeName(_ type: AVAInference.InferenceType) -> String {
    switch type {
    case .auto: "auto"
    case .classification: "classification"
    case .motion: "motion"
    case .entity: "entity"
    case .text: "text"
    case .event: "event"
    case .other: "other"
    case .UNRECOGNIZED(let value): "\(value)"
    }
  }

  private static func valueJSON(_ inference: AVAInference) -> (String, Any)? {
    let pair: (String, any SwiftProtobuf.Message)
    switch inference.value {
    case .classification(let value)?: pair = ("classification", value)
    case .motion(let value)?: pair = ("motion", value)
    case .entity(let value)?: pair = ("entity", value)
    case .text(let value)?: pair = ("text", value)
    case .event(let value)?: pair = ("event", value)
    case .other(let value)?: pair = ("other", value)
    case nil: return nil
    }
    guard let text = try? pair.1.jsonString(), let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) else {
      return nil
    }
    return (pair.0, object)
  }
}

/// How an inference becomes an `Image.Annotate` call (`relay-client ava --annotate-to`): entity → its
/// tag as `object_type`, its box in pixels, its confidence and id; classification → its tag as
/// `object_type`; event → its name as `object_type` and its properties as JSON in `custom_meta_2`;
/// `type` is the inference type, `ml_model` the subtype, and the inference's AVA JSON is kept whole in
/// `custom_meta_1`.
public enum InferenceAnnotation {
  public static func requests(
    _ results: InferenceResults, device: DeviceID, width: Int, height: Int
  ) -> [Chrys_Cloud_Videostreaming_V1beta1_AnnotateRequest] {
    results.inferences.map { inference in
      var request = Chrys_Cloud_Videostreaming_V1beta1_AnnotateRequest()
      request.deviceName = device.rawValue
      request.type = InferenceJSON.typeName(inference.type)
      request.startTimestamp = results.captureTimeMs
      request.width = Int32(width)
      request.height = Int32(height)
      request.mlModel = inference.subtype
      request.objectID = inference.inferenceID
      switch inference.value {
      case .entity(let entity)?:
        request.objectType = entity.tag.value
        request.confidence = Double(entity.tag.confidence)
        if !entity.id.isEmpty { request.objectTrackingID = entity.id }
        if entity.hasBox { request.objectBoudingBox = box(entity.box, width: width, height: height) }
      case .classification(let classification)?:
        request.objectType = classification.tag.value
        request.confidence = Double(classification.tag.confidence)
      case .motion(let motion)?:
        request.objectType = "motion"
        if motion.hasBox { request.objectBoudingBox = box(motion.box, width: width, height: height) }
      case .event(let event)?:
        request.objectType = event.name
        if let data = try? JSONSerialization.data(withJSONObject: event.properties, options: [.sortedKeys]) {
          request.customMeta2 = String(decoding: data, as: UTF8.self)
        }
      case .text(let text)?:
        request.objectType = text.value
      case .other(let other)?:
        request.objectType = other.contentType
      case nil:
        break
      }
      if let data = try? JSONSerialization.data(withJSONObject: InferenceJSON.item(inference), options: [.sortedKeys]) {
        request.customMeta1 = String(decoding: data, as: UTF8.self)
      }
      return request
    }
  }

  private static func box(_ rectangle: AVARectangle, width: Int, height: Int) -> Chrys_Cloud_Videostreaming_V1beta1_BoudingBox {
    .with {
      $0.left = Int32((Double(rectangle.l) * Double(width)).rounded())
      $0.top = Int32((Double(rectangle.t) * Double(height)).rounded())
      $0.width = Int32((Double(rectangle.w) * Double(width)).rounded())
      $0.height = Int32((Double(rectangle.h) * Double(height)).rounded())
    }
  }
}
