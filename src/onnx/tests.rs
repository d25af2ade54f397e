//! Models built with the prost structs, encoded, written to a temporary folder and read
//! back.

use super::proto::{self, data_type as dt, AttributeProto, ModelProto, NodeProto, TensorProto};
use super::*;

fn entry(k: &str, v: &str) -> proto::StringStringEntryProto {
    proto::StringStringEntryProto {
        key: Some(k.into()),
        value: Some(v.into()),
    }
}

fn dims(d: &[i64]) -> Vec<i64> {
    d.to_vec()
}

fn typed_f32(name: &str, d: &[i64], v: &[f32]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        data_type: Some(dt::FLOAT),
        dims: dims(d),
        float_data: v.to_vec(),
        ..Default::default()
    }
}

fn raw(name: &str, ty: i32, d: &[i64], bytes: Vec<u8>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        data_type: Some(ty),
        dims: dims(d),
        raw_data: Some(bytes.into()),
        ..Default::default()
    }
}

fn external(name: &str, d: &[i64], entries: &[(&str, &str)]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        data_type: Some(dt::FLOAT),
        dims: dims(d),
        data_location: Some(proto::DATA_LOCATION_EXTERNAL),
        external_data: entries.iter().map(|(k, v)| entry(k, v)).collect(),
        ..Default::default()
    }
}

fn vi(
    name: &str,
    elem: i32,
    shape: Option<Vec<proto::tensor_shape_proto::Dimension>>,
) -> proto::ValueInfoProto {
    proto::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(proto::TypeProto {
            value: Some(proto::type_proto::Value::TensorType(
                proto::type_proto::Tensor {
                    elem_type: Some(elem),
                    shape: shape.map(|dim| proto::TensorShapeProto { dim }),
                },
            )),
        }),
    }
}

fn fixed(v: i64) -> proto::tensor_shape_proto::Dimension {
    proto::tensor_shape_proto::Dimension {
        value: Some(proto::tensor_shape_proto::dimension::Value::DimValue(v)),
    }
}

fn param(p: &str) -> proto::tensor_shape_proto::Dimension {
    proto::tensor_shape_proto::Dimension {
        value: Some(proto::tensor_shape_proto::dimension::Value::DimParam(
            p.into(),
        )),
    }
}

fn model(initializer: Vec<TensorProto>, node: Vec<NodeProto>) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![proto::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        producer_name: Some("pytorch".into()),
        producer_version: Some("2.5.1".into()),
        graph: Some(proto::GraphProto {
            name: Some("main_graph".into()),
            node,
            initializer,
            input: vec![vi("x", dt::FLOAT, Some(vec![fixed(1), fixed(3)]))],
            output: vec![vi("y", dt::FLOAT, None)],
            ..Default::default()
        }),
        metadata_props: vec![entry("source", "test")],
    }
}

fn write(dir: &Path, name: &str, m: &ModelProto) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

fn read(m: &ModelProto) -> Result<OnnxModel> {
    let d = tempfile::tempdir().unwrap();
    OnnxModel::read(&write(d.path(), "m.onnx", m))
}

fn err(r: Result<OnnxModel>) -> String {
    let e = r.expect_err("an error").to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    assert!(e.starts_with("onnx "), "names the file: {e}");
    e
}

fn init(m: &OnnxModel, name: &str) -> TensorData {
    m.graph.initializers[name].clone()
}

fn le_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn header_fields_and_metadata() {
    let m = read(&model(vec![], vec![])).unwrap();
    assert_eq!(m.ir_version, 8);
    assert_eq!(m.opset, 17);
    assert_eq!(m.producer, "pytorch 2.5.1");
    assert_eq!(m.graph.name, "main_graph");
    assert_eq!(m.metadata, vec![("source".into(), "test".into())]);
    assert!(m.path.ends_with("m.onnx"));
}

#[test]
fn typed_and_raw_floats_read_the_same() {
    let v = [1.0f32, -2.5, 3.25, f32::MIN_POSITIVE, 0.0, 7.0];
    let m = read(&model(
        vec![
            typed_f32("typed", &[2, 3], &v),
            raw("raw", dt::FLOAT, &[2, 3], le_f32(&v)),
        ],
        vec![],
    ))
    .unwrap();
    let want = TensorData {
        dims: vec![2, 3],
        values: Values::F32(v.to_vec()),
    };
    assert_eq!(init(&m, "typed"), want);
    assert_eq!(init(&m, "raw"), want);
}

#[test]
fn float16_bfloat16_double_become_f32() {
    let h = [1.5f32, -0.25, 65504.0];
    let f16_raw: Vec<u8> = h
        .iter()
        .flat_map(|&x| f16::from_f32(x).to_le_bytes())
        .collect();
    let f16_bits: Vec<i32> = h
        .iter()
        .map(|&x| f16::from_f32(x).to_bits() as i32)
        .collect();
    let bf_raw: Vec<u8> = h
        .iter()
        .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
        .collect();
    let bf_bits: Vec<i32> = h
        .iter()
        .map(|&x| bf16::from_f32(x).to_bits() as i32)
        .collect();
    let d = [0.1f64, -1e10, 2.0];
    let d_raw: Vec<u8> = d.iter().flat_map(|x| x.to_le_bytes()).collect();
    let typed = |name: &str, ty: i32, bits: &[i32]| TensorProto {
        name: Some(name.into()),
        data_type: Some(ty),
        dims: vec![3],
        int32_data: bits.to_vec(),
        ..Default::default()
    };
    let m = read(&model(
        vec![
            raw("h_raw", dt::FLOAT16, &[3], f16_raw),
            typed("h_typed", dt::FLOAT16, &f16_bits),
            raw("bf_raw", dt::BFLOAT16, &[3], bf_raw),
            typed("bf_typed", dt::BFLOAT16, &bf_bits),
            raw("d_raw", dt::DOUBLE, &[3], d_raw),
            TensorProto {
                name: Some("d_typed".into()),
                data_type: Some(dt::DOUBLE),
                dims: vec![3],
                double_data: d.to_vec(),
                ..Default::default()
            },
        ],
        vec![],
    ))
    .unwrap();
    for n in ["h_raw", "h_typed"] {
        assert_eq!(init(&m, n).f32s().unwrap(), &h, "{n}");
    }
    let bf: Vec<f32> = h.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
    for n in ["bf_raw", "bf_typed"] {
        assert_eq!(init(&m, n).f32s().unwrap(), &bf[..], "{n}");
    }
    let df: Vec<f32> = d.iter().map(|&x| x as f32).collect();
    for n in ["d_raw", "d_typed"] {
        assert_eq!(init(&m, n).f32s().unwrap(), &df[..], "{n}");
    }
}

#[test]
fn integer_and_bool_tensors_become_i64() {
    let i64s = [1i64, -2, i64::MAX];
    let m = read(&model(
        vec![
            TensorProto {
                name: Some("shape".into()),
                data_type: Some(dt::INT64),
                dims: vec![3],
                int64_data: i64s.to_vec(),
                ..Default::default()
            },
            raw(
                "shape_raw",
                dt::INT64,
                &[3],
                i64s.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            raw(
                "i32",
                dt::INT32,
                &[2],
                [-7i32, 9].iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            raw("i8", dt::INT8, &[2], vec![0xff, 5]),
            raw("u8", dt::UINT8, &[2], vec![0xff, 5]),
            raw("b", dt::BOOL, &[3], vec![0, 1, 2]),
            raw("i16", dt::INT16, &[1], (-300i16).to_le_bytes().to_vec()),
            raw("u16", dt::UINT16, &[1], 60000u16.to_le_bytes().to_vec()),
            raw("u32", dt::UINT32, &[1], u32::MAX.to_le_bytes().to_vec()),
            TensorProto {
                name: Some("i8_typed".into()),
                data_type: Some(dt::INT8),
                dims: vec![2],
                int32_data: vec![-1, 255],
                ..Default::default()
            },
            TensorProto {
                name: Some("u64_typed".into()),
                data_type: Some(dt::UINT64),
                dims: vec![1],
                uint64_data: vec![42],
                ..Default::default()
            },
        ],
        vec![],
    ))
    .unwrap();
    assert_eq!(init(&m, "shape").i64s().unwrap(), &i64s);
    assert_eq!(init(&m, "shape_raw").i64s().unwrap(), &i64s);
    assert_eq!(init(&m, "i32").i64s().unwrap(), &[-7, 9]);
    assert_eq!(init(&m, "i8").i64s().unwrap(), &[-1, 5]);
    assert_eq!(init(&m, "u8").i64s().unwrap(), &[255, 5]);
    assert_eq!(init(&m, "b").i64s().unwrap(), &[0, 1, 1]);
    assert_eq!(init(&m, "i16").i64s().unwrap(), &[-300]);
    assert_eq!(init(&m, "u16").i64s().unwrap(), &[60000]);
    assert_eq!(init(&m, "u32").i64s().unwrap(), &[u32::MAX as i64]);
    assert_eq!(init(&m, "i8_typed").i64s().unwrap(), &[-1, -1]);
    assert_eq!(init(&m, "u64_typed").i64s().unwrap(), &[42]);

    let e = err(read(&model(
        vec![raw(
            "big",
            dt::UINT64,
            &[1],
            u64::MAX.to_le_bytes().to_vec(),
        )],
        vec![],
    )));
    assert!(e.contains("`big`") && e.contains("does not fit"), "{e}");
}

#[test]
fn scalar_and_empty_tensors() {
    let m = read(&model(
        vec![
            typed_f32("scalar", &[], &[4.0]),
            typed_f32("empty", &[0, 3], &[]),
            raw("empty_raw", dt::FLOAT, &[3, 0], vec![]),
        ],
        vec![],
    ))
    .unwrap();
    assert_eq!(
        init(&m, "scalar"),
        TensorData {
            dims: vec![],
            values: Values::F32(vec![4.0])
        }
    );
    assert_eq!(init(&m, "empty").dims, vec![0, 3]);
    assert!(init(&m, "empty").values.is_empty());
    assert!(init(&m, "empty_raw").values.is_empty());
    // a scalar needs its one value
    let e = err(read(&model(vec![typed_f32("s", &[], &[])], vec![])));
    assert!(
        e.contains("`s`") && e.contains("float_data has 0 values, expected 1"),
        "{e}"
    );
}

#[test]
fn element_counts_are_checked() {
    let e = err(read(&model(
        vec![typed_f32("w", &[2, 3], &[1.0; 5])],
        vec![],
    )));
    assert!(
        e.contains("initializer `w` (FLOAT [2, 3]): float_data has 5 values, expected 6"),
        "{e}"
    );
    let e = err(read(&model(
        vec![raw("w", dt::FLOAT, &[2], vec![0; 7])],
        vec![],
    )));
    assert!(e.contains("raw_data has 7 bytes, expected 8"), "{e}");
    let e = err(read(&model(
        vec![raw("w", dt::FLOAT16, &[2], vec![0; 8])],
        vec![],
    )));
    assert!(e.contains("raw_data has 8 bytes, expected 4"), "{e}");
}

#[test]
fn dims_product_overflow_and_limits() {
    // 2^40 * 2^40 overflows; nothing is allocated for it
    let e = err(read(&model(
        vec![typed_f32("huge", &[1 << 40, 1 << 40], &[1.0])],
        vec![],
    )));
    assert!(
        e.contains("`huge`") && e.contains("more than 2147483648 elements"),
        "{e}"
    );
    let e = err(read(&model(
        vec![typed_f32("big", &[(1 << 31) + 1], &[])],
        vec![],
    )));
    assert!(e.contains("`big`") && e.contains("more than"), "{e}");
    // an empty tensor whose other dims overflow (found by the fuzzer: a later flatten
    // multiplied them)
    let e = err(read(&model(
        vec![typed_f32("empty", &[0, 1 << 40, 1 << 40], &[])],
        vec![],
    )));
    assert!(e.contains("`empty`") && e.contains("more than"), "{e}");
    let e = err(read(&model(vec![typed_f32("neg", &[2, -1], &[])], vec![])));
    assert!(
        e.contains("`neg`") && e.contains("negative dimension"),
        "{e}"
    );
    // a zero dimension makes an empty tensor (the others within the limits)
    let m = read(&model(
        vec![typed_f32("z", &[1 << 20, 1 << 10, 0], &[])],
        vec![],
    ))
    .unwrap();
    assert!(init(&m, "z").values.is_empty());
}

#[test]
fn unsupported_data_types_are_named() {
    let t = TensorProto {
        name: Some("names".into()),
        data_type: Some(dt::STRING),
        dims: vec![1],
        ..Default::default()
    };
    let e = err(read(&model(vec![t], vec![])));
    assert!(
        e.contains("initializer `names`: data type STRING is not supported"),
        "{e}"
    );
    let e = err(read(&model(
        vec![raw("c", dt::COMPLEX64, &[1], vec![0; 8])],
        vec![],
    )));
    assert!(e.contains("`c`") && e.contains("COMPLEX64"), "{e}");
    let e = err(read(&model(vec![raw("f8", 17, &[1], vec![0])], vec![])));
    assert!(e.contains("FLOAT8E4M3FN"), "{e}");
    let e = err(read(&model(vec![raw("u", 99, &[1], vec![0])], vec![])));
    assert!(e.contains("data type 99 is not"), "{e}");
}

fn attr(name: &str, ty: i32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(ty),
        ..Default::default()
    }
}

fn conv_and_constant() -> Vec<NodeProto> {
    use proto::attribute_type as at;
    vec![
        NodeProto {
            name: Some("/conv1/Conv".into()),
            op_type: Some("Conv".into()),
            input: vec!["x".into(), "w".into(), "".into()],
            output: vec!["c".into()],
            attribute: vec![
                AttributeProto {
                    ints: vec![3, 3],
                    ..attr("kernel_shape", at::INTS)
                },
                AttributeProto {
                    i: Some(1),
                    ..attr("group", at::INT)
                },
                AttributeProto {
                    f: Some(0.5),
                    ..attr("alpha", at::FLOAT)
                },
                AttributeProto {
                    s: Some(b"NOTSET".to_vec()),
                    ..attr("auto_pad", at::STRING)
                },
                AttributeProto {
                    s: Some(vec![0xff, 0xfe]),
                    ..attr("bad_text", at::STRING)
                },
                AttributeProto {
                    g: Some(Bytes::from_static(b"\x0a\x00")),
                    ..attr("then_branch", at::GRAPH)
                },
            ],
            metadata_props: vec![entry("pkg.torch.onnx.name_scopes", "['', 'conv1']")],
            ..Default::default()
        },
        NodeProto {
            name: Some("/Constant".into()),
            op_type: Some("Constant".into()),
            domain: Some("ai.onnx".into()),
            output: vec!["k".into()],
            attribute: vec![AttributeProto {
                t: Some(raw(
                    "",
                    dt::INT64,
                    &[2],
                    [1i64, -1].iter().flat_map(|x| x.to_le_bytes()).collect(),
                )),
                ..attr("value", at::TENSOR)
            }],
            ..Default::default()
        },
    ]
}

#[test]
fn nodes_attributes_and_accessors() {
    let m = read(&model(
        vec![typed_f32("w", &[1], &[1.0])],
        conv_and_constant(),
    ))
    .unwrap();
    let [conv, constant] = &m.graph.nodes[..] else {
        panic!("two nodes: {:?}", m.graph.nodes)
    };
    assert_eq!(conv.op_type, "Conv");
    assert_eq!(conv.domain, "");
    assert_eq!(conv.inputs, vec!["x", "w", ""], "an omitted input stays");
    assert_eq!(conv.outputs, vec!["c"]);
    assert_eq!(
        conv.metadata,
        vec![("pkg.torch.onnx.name_scopes".into(), "['', 'conv1']".into())]
    );
    assert_eq!(conv.ints("kernel_shape").unwrap(), Some(&[3i64, 3][..]));
    assert_eq!(conv.int("group").unwrap(), Some(1));
    assert_eq!(conv.float("alpha").unwrap(), Some(0.5));
    assert_eq!(conv.string("auto_pad").unwrap().as_deref(), Some("NOTSET"));
    assert_eq!(conv.int("dilations").unwrap(), None);
    let e = conv.int("kernel_shape").unwrap_err();
    assert_eq!(
        e.to_string(),
        "node `/conv1/Conv` (Conv): attribute `kernel_shape` is INTS, expected INT"
    );
    let e = e.at(&m.path).to_string();
    assert!(
        e.starts_with("onnx ") && e.contains("m.onnx: node `/conv1/Conv`"),
        "{e}"
    );
    assert!(conv
        .string("bad_text")
        .unwrap_err()
        .to_string()
        .contains("not UTF-8"));
    assert_eq!(
        conv.attr("then_branch"),
        Some(&Attr::Unsupported(
            "GRAPH (subgraph attribute not supported)"
        ))
    );
    let e = conv.ints("then_branch").unwrap_err().to_string();
    assert!(e.contains("subgraph attribute not supported"), "{e}");

    assert_eq!(constant.domain, "", "ai.onnx is the default domain");
    assert_eq!(
        constant.tensor("value").unwrap(),
        Some(&TensorData {
            dims: vec![2],
            values: Values::I64(vec![1, -1])
        })
    );
}

#[test]
fn attributes_without_a_type_are_inferred() {
    // files from before IR 2 give no `type`
    let n = NodeProto {
        name: Some("n".into()),
        op_type: Some("MaxPool".into()),
        attribute: vec![
            AttributeProto {
                name: Some("kernel_shape".into()),
                ints: vec![2, 2],
                ..Default::default()
            },
            AttributeProto {
                name: Some("eps".into()),
                f: Some(1e-5),
                ..Default::default()
            },
            AttributeProto {
                name: Some("nothing".into()),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let m = read(&model(vec![], vec![n])).unwrap();
    let n = &m.graph.nodes[0];
    assert_eq!(n.ints("kernel_shape").unwrap(), Some(&[2i64, 2][..]));
    assert_eq!(n.float("eps").unwrap(), Some(1e-5));
    assert!(matches!(n.attr("nothing"), Some(Attr::Unsupported(_))));
}

#[test]
fn bad_nodes_are_named() {
    let tensor_attr_error = NodeProto {
        name: Some("c0".into()),
        op_type: Some("Constant".into()),
        attribute: vec![AttributeProto {
            t: Some(typed_f32("", &[4], &[1.0])),
            ..attr("value", proto::attribute_type::TENSOR)
        }],
        ..Default::default()
    };
    let e = err(read(&model(vec![], vec![tensor_attr_error])));
    assert!(e.contains("node `c0` (Constant): attribute `value` (FLOAT [4]): float_data has 1 values, expected 4"), "{e}");
    let no_op = NodeProto {
        name: Some("x".into()),
        ..Default::default()
    };
    let e = err(read(&model(vec![], vec![no_op])));
    assert!(e.contains("node `x` () has no op_type"), "{e}");
    let twice = NodeProto {
        op_type: Some("Relu".into()),
        attribute: vec![attr("a", 2), attr("a", 2)],
        ..Default::default()
    };
    let e = err(read(&model(vec![], vec![twice])));
    assert!(
        e.contains("node #0 (Relu): two attributes are named `a`"),
        "{e}"
    );
}

#[test]
fn initializers_are_not_graph_inputs() {
    let mut m = model(vec![typed_f32("w", &[1], &[2.0])], vec![]);
    let g = m.graph.as_mut().unwrap();
    g.input.push(vi("w", dt::FLOAT, Some(vec![fixed(1)])));
    let m = read(&m).unwrap();
    let names: Vec<&str> = m.graph.inputs.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, vec!["x"]);
    assert!(m.graph.initializers.contains_key("w"));
}

#[test]
fn duplicate_and_unnamed_initializers() {
    let e = err(read(&model(
        vec![typed_f32("w", &[1], &[1.0]), typed_f32("w", &[1], &[1.0])],
        vec![],
    )));
    assert!(e.contains("two initializers are named `w`"), "{e}");
    let e = err(read(&model(vec![typed_f32("", &[1], &[1.0])], vec![])));
    assert!(e.contains("initializer #0 has no name"), "{e}");
}

#[test]
fn value_info_dims() {
    let mut m = model(vec![], vec![]);
    let g = m.graph.as_mut().unwrap();
    g.input = vec![vi(
        "x",
        dt::FLOAT,
        Some(vec![
            param("batch"),
            fixed(3),
            proto::tensor_shape_proto::Dimension::default(),
        ]),
    )];
    g.value_info = vec![vi("h", dt::FLOAT16, Some(vec![]))];
    g.output = vec![proto::ValueInfoProto {
        name: Some("seq".into()),
        r#type: None,
    }];
    let m = read(&m).unwrap();
    assert_eq!(
        m.graph.inputs,
        vec![ValueInfo {
            name: "x".into(),
            elem_type: dt::FLOAT,
            dims: Some(vec![
                Dim::Dynamic("batch".into()),
                Dim::Fixed(3),
                Dim::Dynamic(String::new())
            ]),
        }]
    );
    assert_eq!(m.graph.value_info[0].dims, Some(vec![]), "a scalar");
    assert_eq!(m.graph.value_info[0].elem_type, dt::FLOAT16);
    assert_eq!(
        m.graph.outputs[0],
        ValueInfo {
            name: "seq".into(),
            elem_type: 0,
            dims: None
        }
    );
}

/// TensorProto with onnx.proto's packing flipped: `dims` packed, the data fields not.
#[derive(Clone, PartialEq, prost::Message)]
struct FlippedPacking {
    #[prost(int64, repeated, packed = "true", tag = "1")]
    dims: Vec<i64>,
    #[prost(int32, optional, tag = "2")]
    data_type: Option<i32>,
    #[prost(float, repeated, packed = "false", tag = "4")]
    float_data: Vec<f32>,
    #[prost(string, optional, tag = "8")]
    name: Option<String>,
}

#[test]
fn packed_and_unpacked_repeated_fields_decode() {
    let flipped = FlippedPacking {
        dims: vec![2, 2],
        data_type: Some(dt::FLOAT),
        float_data: vec![1.0, 2.0, 3.0, 4.0],
        name: Some("w".into()),
    };
    let t = TensorProto::decode(&flipped.encode_to_vec()[..]).unwrap();
    assert_eq!(t, typed_f32("w", &[2, 2], &[1.0, 2.0, 3.0, 4.0]));
}

#[test]
fn model_level_errors() {
    let mut m = model(vec![], vec![]);
    m.graph = None;
    let e = err(read(&m));
    assert!(e.contains("not an ONNX model") && e.contains("no"), "{e}");

    let mut m = model(vec![], vec![]);
    m.opset_import = vec![proto::OperatorSetIdProto {
        domain: Some("com.microsoft".into()),
        version: Some(1),
    }];
    let e = err(read(&m));
    assert!(
        e.contains("no opset_import for the default domain") && e.contains("`com.microsoft` 1"),
        "{e}"
    );

    let mut m = model(vec![], vec![]);
    m.opset_import[0].domain = Some("ai.onnx".into());
    m.opset_import.push(proto::OperatorSetIdProto {
        domain: Some("com.microsoft".into()),
        version: Some(1),
    });
    assert_eq!(read(&m).unwrap().opset, 17);

    let mut m = model(vec![], vec![]);
    m.opset_import.push(proto::OperatorSetIdProto {
        domain: None,
        version: Some(13),
    });
    let e = err(read(&m));
    assert!(e.contains("twice (17 and 13)"), "{e}");
}

#[test]
fn files_that_are_not_onnx() {
    let d = tempfile::tempdir().unwrap();
    let text = d.path().join("notes.onnx");
    std::fs::write(&text, "this is a text file, not a model\n").unwrap();
    let e = err(OnnxModel::read(&text));
    assert!(
        e.contains("notes.onnx: not an ONNX model (") && e.contains("a text file"),
        "{e}"
    );

    let png = d.path().join("img.onnx");
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend([0u8; 40]);
    std::fs::write(&png, bytes).unwrap();
    let e = err(OnnxModel::read(&png));
    assert!(
        e.contains("not an ONNX model (") && e.contains("PNG"),
        "{e}"
    );

    let empty = d.path().join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    let e = err(OnnxModel::read(&empty));
    assert!(e.contains("not an ONNX model (empty file)"), "{e}");

    let e = OnnxModel::read(&d.path().join("missing.onnx"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.onnx"), "{e}");
}

#[test]
fn truncated_files_fail_to_decode() {
    let v: Vec<f32> = (0..64).map(|i| i as f32).collect();
    let bytes = model(
        vec![raw("w", dt::FLOAT, &[64], le_f32(&v))],
        conv_and_constant(),
    )
    .encode_to_vec();
    let p = Path::new("t.onnx");
    for cut in [1, 7, bytes.len() / 2, bytes.len() - 1] {
        let e = err(OnnxModel::from_bytes(&bytes[..cut], p));
        assert!(
            e.contains("t.onnx: not an ONNX model (") || e.contains("opset"),
            "cut {cut}: {e}"
        );
    }
    let e = err(OnnxModel::from_bytes(&bytes[..bytes.len() / 2], p));
    assert!(e.contains("protobuf decoding failed"), "{e}");
    assert!(OnnxModel::from_bytes(&bytes, p).is_ok());
}

#[test]
fn subgraphs_and_sparse_initializers() {
    let mut m = model(vec![], vec![]);
    m.graph.as_mut().unwrap().sparse_initializer = vec![Bytes::from_static(b"")];
    let e = err(read(&m));
    assert!(e.contains("sparse"), "{e}");
}

// ---- external data

struct Ext {
    dir: tempfile::TempDir,
}

impl Ext {
    fn new(data: &[u8]) -> Ext {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.onnx.data"), data).unwrap();
        Ext { dir }
    }

    fn read(&self, tensors: Vec<TensorProto>) -> Result<OnnxModel> {
        OnnxModel::read(&write(self.dir.path(), "m.onnx", &model(tensors, vec![])))
    }
}

#[test]
fn external_data_reads_from_the_data_file() {
    let a = [1.0f32, 2.0, 3.0, 4.0];
    let b = [5.0f32, 6.0];
    let mut data = le_f32(&a);
    data.extend([0u8; 4]); // padding
    data.extend(le_f32(&b));
    let ext = Ext::new(&data);
    let m = ext
        .read(vec![
            external(
                "a",
                &[2, 2],
                &[
                    ("location", "m.onnx.data"),
                    ("offset", "0"),
                    ("length", "16"),
                ],
            ),
            external(
                "b",
                &[2],
                &[
                    ("location", "./m.onnx.data"),
                    ("offset", "20"),
                    ("length", "8"),
                    ("checksum", "x"),
                ],
            ),
            // no length: to the end of the file
            external("c", &[2], &[("location", "m.onnx.data"), ("offset", "20")]),
        ])
        .unwrap();
    assert_eq!(init(&m, "a").f32s().unwrap(), &a);
    assert_eq!(init(&m, "a").dims, vec![2, 2]);
    assert_eq!(init(&m, "b").f32s().unwrap(), &b);
    assert_eq!(init(&m, "c").f32s().unwrap(), &b);

    // in a subfolder, and from a relative model path
    std::fs::create_dir(ext.dir.path().join("w")).unwrap();
    std::fs::write(ext.dir.path().join("w/d.bin"), le_f32(&b)).unwrap();
    let m = ext
        .read(vec![external("d", &[2], &[("location", "w/d.bin")])])
        .unwrap();
    assert_eq!(init(&m, "d").f32s().unwrap(), &b);
}

#[test]
fn external_data_that_is_too_short() {
    let ext = Ext::new(&[0u8; 10]);
    let e = err(ext.read(vec![external(
        "w",
        &[4],
        &[("location", "m.onnx.data"), ("length", "16")],
    )]));
    assert!(
        e.contains("initializer `w` (FLOAT [4]): external data file `m.onnx.data` has 10 bytes; offset 0 + length 16 goes past its end"),
        "{e}"
    );
    let e = err(ext.read(vec![external("w", &[4], &[("location", "m.onnx.data")])]));
    assert!(
        e.contains("`w`") && e.contains("length 10 bytes, expected 16"),
        "{e}"
    );
    let e = err(ext.read(vec![external(
        "w",
        &[2],
        &[("location", "m.onnx.data"), ("length", "4")],
    )]));
    assert!(
        e.contains("length 4 bytes, expected 8 (2 elements of 4 bytes)"),
        "{e}"
    );
}

#[test]
fn external_offset_beyond_the_end() {
    let ext = Ext::new(&[0u8; 16]);
    let e = err(ext.read(vec![external(
        "w",
        &[1],
        &[
            ("location", "m.onnx.data"),
            ("offset", "4096"),
            ("length", "4"),
        ],
    )]));
    assert!(
        e.contains("`w`") && e.contains("has 16 bytes; offset 4096 + length 4 goes past its end"),
        "{e}"
    );
    let e = err(ext.read(vec![external(
        "w",
        &[1],
        &[("location", "m.onnx.data"), ("offset", "17")],
    )]));
    assert!(e.contains("offset 17 goes past its end"), "{e}");
    let e = err(ext.read(vec![external(
        "w",
        &[1],
        &[
            ("location", "m.onnx.data"),
            ("offset", "18446744073709551615"),
            ("length", "4"),
        ],
    )]));
    assert!(e.contains("goes past its end"), "{e}");
    let e = err(ext.read(vec![external(
        "w",
        &[1],
        &[("location", "m.onnx.data"), ("offset", "-4")],
    )]));
    assert!(e.contains("offset `-4` is not a byte count"), "{e}");
}

#[test]
fn external_locations_outside_the_folder_are_refused() {
    let ext = Ext::new(&[0u8; 4]);
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.bin");
    std::fs::write(&secret, [0u8; 4]).unwrap();
    let abs = secret.to_str().unwrap();
    let e = err(ext.read(vec![external("w", &[1], &[("location", abs)])]));
    assert!(
        e.contains("`w`") && e.contains("is refused: it is absolute"),
        "{e}"
    );
    for loc in ["../x", "sub/../../x", "..", "sub/../m.onnx.data"] {
        let e = err(ext.read(vec![external("w", &[1], &[("location", loc)])]));
        assert!(e.contains("is refused: it contains `..`"), "{loc}: {e}");
    }
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&secret, ext.dir.path().join("link.bin")).unwrap();
        let e = err(ext.read(vec![external("w", &[1], &[("location", "link.bin")])]));
        assert!(
            e.contains("is refused: it resolves to") && e.contains("outside the model's folder"),
            "{e}"
        );
    }
}

#[test]
fn external_data_file_missing_or_unnamed() {
    let ext = Ext::new(&[]);
    let e = err(ext.read(vec![external("w", &[1], &[("location", "gone.data")])]));
    assert!(
        e.contains("initializer `w` (FLOAT [1]): external data file `gone.data` (")
            && e.contains("gone.data): "),
        "{e}"
    );
    let e = err(ext.read(vec![external("w", &[1], &[("offset", "0")])]));
    assert!(e.contains("external_data has no location"), "{e}");
    // an empty data file is fine for empty tensors, and too short for others
    let m = ext
        .read(vec![external("z", &[0], &[("location", "m.onnx.data")])])
        .unwrap();
    assert!(init(&m, "z").values.is_empty());
    let e = err(ext.read(vec![external("w", &[1], &[("location", "m.onnx.data")])]));
    assert!(e.contains("length 0 bytes, expected 4"), "{e}");
    let e = err(ext.read(vec![external("w", &[1], &[("location", ".")])]));
    assert!(e.contains("not a regular file"), "{e}");
}

#[test]
fn external_data_from_bytes_needs_a_real_folder() {
    let bytes = model(vec![external("w", &[1], &[("location", "w.data")])], vec![]).encode_to_vec();
    let e = err(OnnxModel::from_bytes(
        &bytes,
        Path::new("/nonexistent-treevis/m.onnx"),
    ));
    assert!(e.contains("`w`") && e.contains("cannot be resolved"), "{e}");
}
