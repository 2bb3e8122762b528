//! Replay of real footage (Debian opencv-doc's `vtest.avi`, a street seen
//! from above, and still photos) through the real `ffmpeg`, and the
//! conversion checked against ffmpeg's own RGB output.

mod support;

use std::path::Path;
use std::time::Duration;

use luciole::capture::{self, PixelFormat};
use luciole::config;
use luciole::convert::{Converter, RgbImage};
use luciole::shutdown::Shutdown;
use support::*;

fn replay_config(dir: &Path, path: &Path, extra: &str) -> config::Settings {
    let camera = format!(
        "source = \"replay\"\n{extra}\n[camera.replay]\npath = \"{}\"\npace = \"fast\"",
        path.display()
    );
    config::load(&write_config(dir, "replay.toml", &camera)).unwrap()
}

/// Up to `n` frames of a replay converted to full-size RGB, with their
/// sequence numbers and timestamps.
fn frames(settings: &config::Settings, n: usize) -> Vec<(u64, Duration, RgbImage, PixelFormat)> {
    let mut source = capture::open(&settings.camera, &Shutdown::new()).unwrap();
    let mut converter = Converter::new();
    let mut out = Vec::new();
    while out.len() < n {
        let mut got = None;
        let more = source
            .next_frame(&mut |f| {
                let mut rgb = RgbImage::default();
                converter.to_rgb(&f, &mut rgb).unwrap();
                got = Some((f.sequence, f.timestamp, rgb, f.layout.format));
            })
            .unwrap();
        if !more {
            break;
        }
        out.push(got.unwrap());
    }
    out
}

#[test]
fn a_video_replay_yields_every_frame_with_its_presentation_time() {
    let dir = scratch("replay-all");
    let settings = replay_config(
        &dir,
        &footage().join("vtest.avi"),
        "pixel_formats = [\"GREY\"]",
    );
    let all = frames(&settings, 10_000);
    // ffprobe -count_frames says 795 frames at 10 fps.
    assert_eq!(all.len(), 795);
    for (i, (sequence, timestamp, rgb, format)) in all.iter().enumerate() {
        assert_eq!(*sequence, i as u64);
        assert_eq!(*timestamp, Duration::from_millis(100 * i as u64));
        assert_eq!(
            (rgb.width, rgb.height, *format),
            (768, 576, PixelFormat::Grey)
        );
    }
}

#[test]
fn yuyv_nv12_and_grey_frames_convert_like_ffmpegs_own_rgb() {
    let dir = scratch("replay-convert");
    let video = footage().join("vtest.avi");
    let truth = frames(
        &replay_config(&dir, &video, "pixel_formats = [\"RGB3\"]"),
        30,
    );
    assert_eq!(truth.len(), 30);
    for format in ["YUYV", "NV12", "GREY"] {
        let ours = frames(
            &replay_config(&dir, &video, &format!("pixel_formats = [\"{format}\"]")),
            30,
        );
        assert_eq!(ours.len(), 30);
        for ((_, _, expected, _), (_, _, got, got_format)) in truth.iter().zip(&ours) {
            assert_eq!(got_format.name(), format);
            let diffs: Vec<u8> = if format == "GREY" {
                // Compare luma: BT.601 weights of ffmpeg's RGB.
                expected
                    .data
                    .chunks(3)
                    .zip(got.data.chunks(3))
                    .map(|(e, g)| {
                        let y = 0.299 * f32::from(e[0])
                            + 0.587 * f32::from(e[1])
                            + 0.114 * f32::from(e[2]);
                        (y.round() as u8).abs_diff(g[0])
                    })
                    .collect()
            } else {
                expected
                    .data
                    .iter()
                    .zip(&got.data)
                    .map(|(a, b)| a.abs_diff(*b))
                    .collect()
            };
            let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
            assert!(mean < 2.5, "{format}: mean difference {mean}");
        }
    }
}

#[test]
fn a_replay_scales_to_the_configured_size() {
    let dir = scratch("replay-scale");
    let settings = replay_config(
        &dir,
        &footage().join("vtest.avi"),
        "width = 640\nheight = 480\npixel_formats = [\"NV12\"]",
    );
    let got = frames(&settings, 3);
    assert!(got
        .iter()
        .all(|(_, _, rgb, _)| (rgb.width, rgb.height) == (640, 480)));
}

#[test]
fn an_image_folder_plays_in_name_order_and_loops() {
    let dir = scratch("replay-images");
    let footage = footage();
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::copy(footage.join("messi5.jpg"), images.join("b.jpg")).unwrap();
    std::fs::copy(
        footage.join("licenseplate_motion.jpg"),
        images.join("a.jpg"),
    )
    .unwrap();
    std::fs::write(images.join("notes.txt"), "not an image").unwrap();
    let camera = format!(
        "source = \"replay\"\nfps = 5\n[camera.replay]\npath = \"{}\"\npace = \"fast\"\nloop = true",
        images.display()
    );
    let settings = config::load(&write_config(&dir, "pole.toml", &camera)).unwrap();
    let got = frames(&settings, 5);
    let a = image::open(images.join("a.jpg")).unwrap();
    let b = image::open(images.join("b.jpg")).unwrap();
    let sizes: Vec<(u32, u32)> = got
        .iter()
        .map(|(_, _, rgb, _)| (rgb.width, rgb.height))
        .collect();
    let (sa, sb) = ((a.width(), a.height()), (b.width(), b.height()));
    assert_ne!(sa, sb);
    assert_eq!(sizes, [sa, sb, sa, sb, sa]);
    let times: Vec<u128> = got.iter().map(|(_, t, _, _)| t.as_millis()).collect();
    assert_eq!(times, [0, 200, 400, 600, 800]);
    assert_eq!(
        got[2].2.data,
        a.to_rgb8().into_raw(),
        "frames are the decoded images, unchanged"
    );
}

#[test]
fn capture_writes_pngs_and_an_index_from_real_footage() {
    let dir = scratch("capture-replay");
    let camera = format!(
        "source = \"replay\"\npixel_formats = [\"YUYV\"]\n[camera.replay]\npath = \"{}\"\npace = \"fast\"",
        footage().join("vtest.avi").display()
    );
    let config = write_config(&dir, "pole.toml", &camera);
    let out = dir.join("frames");
    let output = capture(&config, 12, &out);
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(summary["frames"], 12);
    assert_eq!(summary["format"], "YUYV");
    assert_eq!(summary["width"], 768);
    assert_eq!(summary["fps_negotiated"], 10.0);
    assert_eq!(summary["fps_measured"], 10.0);
    assert!(
        stderr(&output).contains("only the privacy masks are filled"),
        "the privacy warning is logged"
    );
    let index = std::fs::read_to_string(out.join("frames.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = index
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 12);
    let mut hashes = std::collections::HashSet::new();
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record["sequence"], i);
        assert_eq!(record["timestamp_us"], 100_000 * i as u64);
        let png = image::open(out.join(record["file"].as_str().unwrap())).unwrap();
        assert_eq!((png.width(), png.height()), (768, 576));
        hashes.insert(record["hash"].as_str().unwrap().to_string());
    }
    assert_eq!(hashes.len(), 12, "people walk: every frame differs");
}

#[test]
fn a_file_that_is_not_a_video_is_a_clear_error() {
    let dir = scratch("replay-garbage-input");
    let bogus = dir.join("clip.avi");
    std::fs::write(&bogus, b"RIFF\0\0\0\0 this is not a video").unwrap();
    let camera = format!(
        "source = \"replay\"\n[camera.replay]\npath = \"{}\"",
        bogus.display()
    );
    let err = capture_failure("replay-garbage", &camera);
    assert!(
        err.contains(&format!("replay {}: not a readable video", bogus.display())),
        "{err}"
    );
}

#[test]
fn an_empty_image_folder_is_a_clear_error() {
    let dir = scratch("replay-empty-input");
    let camera = format!(
        "source = \"replay\"\n[camera.replay]\npath = \"{}\"",
        dir.display()
    );
    let err = capture_failure("replay-empty", &camera);
    assert!(err.contains("holds no .png, .jpg or .jpeg images"), "{err}");
}

/// Runs `ffmpeg` with `args`, failing loudly if it cannot.
fn ffmpeg(args: &[&str]) {
    let output = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs (Debian package ffmpeg; tests/setup installs it)");
    assert!(
        output.status.success(),
        "ffmpeg {args:?}: {}",
        stderr(&output)
    );
}

#[test]
fn a_replay_with_many_decode_errors_plays_to_the_end_without_stalling() {
    // 3,000 small MPEG-4 frames, then their packets damaged by ffmpeg's own
    // noise filter: decoding writes about 500 KB of error lines, far more
    // than a pipe holds (64 KiB). A standard error read only at exit
    // blocks ffmpeg, and the replay with it, after a few hundred frames.
    let dir = scratch("replay-decode-errors");
    let clean = dir.join("clean.avi");
    let damaged = dir.join("damaged.avi");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x48:rate=25",
        "-frames:v",
        "3000",
        "-c:v",
        "mpeg4",
        "-g",
        "1",
        clean.to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-i",
        clean.to_str().unwrap(),
        "-c",
        "copy",
        "-bsf:v",
        "noise=amount=20",
        damaged.to_str().unwrap(),
    ]);
    let settings = replay_config(&dir, &damaged, "pixel_formats = [\"GREY\"]");
    let (tx, rx) = std::sync::mpsc::channel();
    let shutdown = Shutdown::new();
    let stop = shutdown.clone();
    let reader = std::thread::spawn(move || {
        let mut source = capture::open(&settings.camera, &stop).unwrap();
        let mut frames = 0u64;
        loop {
            match source.next_frame(&mut |_| {}) {
                Ok(true) => frames += 1,
                Ok(false) => break,
                Err(err) => {
                    let _ = tx.send(Err(format!("after {frames} frames: {err}")));
                    return;
                }
            }
            let _ = tx.send(Ok(frames));
        }
        let _ = tx.send(Err(format!("ended after {frames} frames")));
    });
    // Frames keep coming until the end: at most 60 s between two (a loaded
    // machine), never a stall.
    let mut frames = 0;
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(n)) => frames = n,
            Ok(Err(end)) => {
                // ffmpeg may exit non-zero after so many errors: the
                // error then carries a bounded tail of its lines.
                assert!(
                    end.starts_with("ended")
                        || end.contains("ffmpeg failed") && end.contains("last 8 of"),
                    "{end}"
                );
                break;
            }
            Err(_) => {
                shutdown.request();
                panic!("the replay stalled after {frames} frames");
            }
        }
    }
    reader.join().unwrap();
    // Some damaged frames are dropped by the decoder; most come through.
    assert!(frames > 2500, "only {frames} frames of 3000");
}

#[test]
fn an_mjpg_image_replay_delivers_the_files_undecoded_at_their_own_size() {
    let dir = scratch("replay-mjpg");
    let frames_dir = dir.join("frames");
    std::fs::create_dir_all(&frames_dir).unwrap();
    ffmpeg(&[
        "-i",
        footage().join("vtest.avi").to_str().unwrap(),
        "-frames:v",
        "3",
        "-q:v",
        "5",
        frames_dir.join("f%02d.jpg").to_str().unwrap(),
    ]);
    std::fs::write(frames_dir.join("f04.jpg"), b"not a JPEG at all").unwrap();
    let settings = replay_config(&dir, &frames_dir, "pixel_formats = [\"MJPG\"]");
    let mut source = capture::open(&settings.camera, &Shutdown::new()).unwrap();
    assert_eq!(source.info().layout.format, PixelFormat::Mjpeg);
    assert_eq!(
        (source.info().layout.width, source.info().layout.height),
        (768, 576)
    );
    let mut seen = Vec::new();
    while source
        .next_frame(&mut |f| seen.push((f.sequence, f.data.to_vec())))
        .unwrap()
    {}
    assert_eq!(seen.len(), 4);
    let third = std::fs::read(frames_dir.join("f03.jpg")).unwrap();
    assert_eq!(seen[2], (2, third), "the file's bytes, as they are");
    assert_eq!(seen[3].1, b"not a JPEG at all", "corrupt frames pass too");
    let mut converter = Converter::new();
    let mut rgb = RgbImage::default();
    let frame = luciole::capture::FrameRef {
        data: &seen[3].1,
        layout: source.info().layout,
        sequence: 3,
        timestamp: Duration::ZERO,
        stream: 0,
    };
    assert!(converter.to_rgb(&frame, &mut rgb).is_err());

    // A size that would need re-encoding is refused, naming the keys.
    let camera = format!(
        "source = \"replay\"\npixel_formats = [\"MJPG\"]\nwidth = 320\nheight = 240\n[camera.replay]\npath = \"{}\"",
        frames_dir.display()
    );
    let err = capture_failure("replay-mjpg-size", &camera);
    assert!(
        err.contains("remove camera.width and camera.height"),
        "{err}"
    );
}

/// A triangle over the footpath of vtest.avi, where people walk.
const MASK: [[f32; 2]; 3] = [[120.0, 150.0], [460.0, 210.0], [260.0, 470.0]];

/// `capture` of 3 frames of `camera` (a `[camera]` body), with or without
/// the mask; the images and the files' modes.
fn captured(dir: &Path, camera: &str, masked: bool) -> Vec<(image::RgbImage, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mask = format!(
        "\n[[privacy.masks]]\nname = \"footpath\"\npolygon = {:?}\n",
        MASK
    );
    let name = if masked { "masked" } else { "plain" };
    let body = if masked {
        format!("{camera}{mask}")
    } else {
        camera.to_string()
    };
    let config = write_config(dir, &format!("{name}.toml"), &body);
    let out = dir.join(name);
    let output = capture(&config, 3, &out);
    assert!(output.status.success(), "{}", stderr(&output));
    (0..3)
        .map(|i| {
            let path = out.join(format!("frame-{i:06}.png"));
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            (image::open(&path).unwrap().to_rgb8(), mode)
        })
        .collect()
}

#[test]
fn captures_are_masked_in_every_pixel_format_and_untouched_elsewhere() {
    use luciole::analytics::geometry::inside;
    let dir = scratch("capture-masked");
    let video = footage().join("vtest.avi");
    let jpegs = dir.join("jpegs");
    std::fs::create_dir_all(&jpegs).unwrap();
    ffmpeg(&[
        "-i",
        video.to_str().unwrap(),
        "-frames:v",
        "3",
        "-q:v",
        "3",
        jpegs.join("f%02d.jpg").to_str().unwrap(),
    ]);
    let (min, max) = MASK.iter().fold(([f32::MAX; 2], [0f32; 2]), |(lo, hi), p| {
        (
            [lo[0].min(p[0]), lo[1].min(p[1])],
            [hi[0].max(p[0]), hi[1].max(p[1])],
        )
    });
    for (format, path) in [
        ("YUYV", &video),
        ("NV12", &video),
        ("GREY", &video),
        ("RGB3", &video),
        ("MJPG", &jpegs),
    ] {
        let camera = format!(
            "source = \"replay\"\npixel_formats = [\"{format}\"]\n[camera.replay]\npath = \"{}\"\npace = \"fast\"",
            path.display()
        );
        let dir = dir.join(format);
        std::fs::create_dir_all(&dir).unwrap();
        let plain = captured(&dir, &camera, false);
        let masked = captured(&dir, &camera, true);
        for ((plain, _), (masked, mode)) in plain.iter().zip(&masked) {
            assert_eq!(*mode, 0o600, "{format}: captures are private");
            let (mut inside_n, mut lit_before) = (0u64, 0u64);
            for (x, y, px) in masked.enumerate_pixels() {
                let centre = [x as f32 + 0.5, y as f32 + 0.5];
                if inside(&MASK, centre) {
                    inside_n += 1;
                    assert!(
                        px.0.iter().all(|&v| v <= 2),
                        "{format}: pixel ({x}, {y}) in the mask is {:?}",
                        px.0
                    );
                    if plain.get_pixel(x, y).0.iter().any(|&v| v > 40) {
                        lit_before += 1;
                    }
                } else if (x as f32) < min[0] - 4.0
                    || (x as f32) > max[0] + 4.0
                    || (y as f32) < min[1] - 4.0
                    || (y as f32) > max[1] + 4.0
                {
                    assert_eq!(
                        px,
                        plain.get_pixel(x, y),
                        "{format}: pixel ({x}, {y}) far from the mask changed"
                    );
                }
            }
            // The triangle's area, and it hid a real, lit street.
            assert!((49_000..51_500).contains(&inside_n), "{inside_n}");
            assert!(lit_before > inside_n / 2, "{lit_before} of {inside_n}");
        }
    }
}
