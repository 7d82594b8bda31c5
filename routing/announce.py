"""Position and expected-wait sentences for callers on hold (zh and en), from a `WaitInfo`."""

from __future__ import annotations

from routing.distributor import WaitInfo


def announce_wait(info: WaitInfo, lang: str = "en") -> str:
    zh = lang.lower().startswith("zh")
    if info.ahead == 0:
        text = "您是下一位，请稍候。" if zh else "You are next in line."
    elif zh:
        text = f"您前面还有{info.ahead}位客户。"
    else:
        one = info.ahead == 1
        text = f"There {'is' if one else 'are'} {info.ahead} caller{'' if one else 's'} ahead of you."
    minutes = info.expected_wait_min
    if minutes is not None and minutes > 0 and info.ahead > 0:
        if zh:
            text += f"预计等待约{minutes}分钟。"
        else:
            text += f" The expected wait is about {minutes} minute{'' if minutes == 1 else 's'}."
    if info.offer_callback:
        text += "如需我们稍后回电，请按1。" if zh else " To be called back instead, press 1."
    return text
