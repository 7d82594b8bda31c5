"""Caller sentiment per transcript line, in English and Mandarin, and a running score per call.

A lexicon method that runs offline and in microseconds (no model to load): weighted cue words and
phrases in both languages, with negation ("not happy", 不满意 vs 不错), intensifiers ("really",
非常, 太), exclamation marks and SHOUTED words scaling the cue they touch. A line's score is
`tanh(sum / 2.5)` in [-1, 1]; `CallMood` keeps an exponential moving average over the caller's lines
and raises `angry` when one line is hostile (`ANGRY_AT`) or the caller stays unhappy (`UNHAPPY_AT`).

    line = score_line("This is ridiculous, I want to speak to a manager!", "en")   # line.score < 0
    mood = CallMood(); mood.add(line); mood.angry

Hostility that avoids cue words is caught by patterns (EN_PATTERNS, ZH_PATTERNS: repeated contact, escalation
demands, threats to leave or to go to the regulator / 银保监 / 消保, rhetorical challenges, sarcasm such as
"great, just great" or praise followed by trouble, whose praise then counts against); softeners ("a bit", 有点)
tone unhappiness down. `with_voice(line, Voice(...))` adds how the line was said, against the caller's own usual
in this call (hotline/sentiment_live.py measures it with asr/prosody.py): unhappy words said louder are angry.

Accuracy: tests/dialog/test_sentiment_eval.py (88 held-out lines written before tuning, 60 development lines)
and tests/console/test_sentiment.py; the figures are in docs/CONSOLE.md. Speech recognition errors defeat a
lexicon; the flag is a hint for a supervisor, not a verdict.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

ANGRY_AT = -0.8  # a line (or the running score) this low is angry: hostile words, not just unhappy ones
UNHAPPY_AT = -0.6  # a running score this low over two lines or more also flags the call (sustained)
NEGATIVE_AT = -0.25
POSITIVE_AT = 0.25
ALPHA = 0.5  # weight of the newest line in the running score
_SCALE = 2.5

# English cues: word or phrase -> weight (negative = unhappy). Phrases are matched before words.
EN_PHRASES: dict[str, float] = {
    "fed up": -2.5, "sick of": -2.5, "sick and tired": -3.0, "waste of time": -2.5, "wasting my time": -2.5,
    "speak to a manager": -3.0, "talk to a manager": -3.0, "speak to your manager": -3.0, "your supervisor": -2.0,
    "want to complain": -2.0, "make a complaint": -1.0,
    "third time": -1.5, "every time": -0.8, "what the hell": -3.0, "are you kidding": -2.5, "no one helps": -2.0,
    "nobody helps": -2.0, "still not": -1.2, "never again": -2.0, "not working": -1.5, "doesn't work": -1.5,
    "does not work": -1.5, "thank you": 2.0, "thanks a lot": 2.0, "very helpful": 2.5, "that's great": 2.0,
    "no problem": 0.5, "all good": 1.5, "well done": 2.0, "shut up": -3.0, "put me through": -1.0, "real person": -1.0,
    "a human": -1.0, "report you": -2.5, "cut off": -1.5, "hung up on me": -2.5, "don't understand": -1.2,
    "do not understand": -1.2, "sorted it": 1.5, "sorted out": 1.5, "makes sense": 1.0,
}
EN_WORDS: dict[str, float] = {
    # hostile
    "angry": -2.5, "furious": -3.0, "outraged": -3.0, "livid": -3.0, "ridiculous": -2.5, "unacceptable": -2.5,
    "disgusting": -3.0, "disgraceful": -3.0, "pathetic": -3.0, "useless": -2.5, "incompetent": -3.0,
    "stupid": -2.5, "idiot": -3.0, "idiots": -3.0, "scam": -2.5, "scammed": -2.5, "rip-off": -2.5, "ripoff": -2.5,
    "hate": -2.5, "worst": -2.5, "terrible": -2.5, "awful": -2.5, "horrible": -2.5, "rubbish": -2.0,
    "damn": -2.0, "damned": -2.0, "hell": -1.5, "crap": -2.5, "shit": -3.0, "bullshit": -3.0, "fuck": -3.5,
    "fucking": -3.5, "bloody": -1.5, "nonsense": -2.0, "joke": -1.0, "lied": -2.0, "liars": -3.0, "lying": -2.0,
    "absurd": -2.5, "outrageous": -3.0, "appalling": -3.0, "shocking": -2.0, "clueless": -2.5, "hopeless": -2.5,
    "stole": -0.5, "steal": -0.5, "stealing": -0.5, "thieves": -3.0, "crooks": -3.0, "cheated": -2.5,
    "regulator": -2.0, "unbelievable": -2.0, "insane": -2.0, "sucks": -2.5,
    "complain": -1.5, "complaint": -1.2, "sue": -2.5, "lawyer": -2.0, "ombudsman": -2.0,
    # unhappy
    "upset": -2.0, "annoyed": -2.0, "frustrated": -2.0, "frustrating": -2.0, "disappointed": -2.0,
    "unhappy": -2.0, "bad": -1.5, "wrong": -1.2, "problem": -0.6, "again": -0.4, "wait": -0.3, "waiting": -0.6,
    "forever": -1.2, "slow": -1.0, "mess": -1.5, "fail": -1.5, "failed": -1.5, "failing": -1.5,
    "never": -0.8, "unfair": -2.0, "confused": -1.2, "confusing": -1.2, "bounced": -1.2, "declined": -1.0,
    "blocked": -0.6, "lost": -0.4, "missing": -1.0, "late": -0.8, "nervous": -1.2, "scared": -1.5, "stressed": -1.5,
    "sorry": -0.3, "unclear": -1.0, "wrongly": -1.5, "mistake": -1.2, "error": -1.0, "broken": -1.5,
    "charged": -0.5, "overcharged": -2.0, "stolen": -0.4, "worried": -1.0,
    "unfortunately": -1.2, "sadly": -1.2, "afraid": -1.0, "concerned": -1.2, "inconvenient": -1.5, "annoying": -2.0,
    "disappointing": -2.0, "hoping": -0.8, "forgot": -0.6, "closed": -0.6, "haven't": -0.4, "hasn't": -0.4,
    # happy
    "thanks": 2.0, "thank": 1.8, "great": 2.0, "perfect": 2.0, "excellent": 2.5, "wonderful": 2.5,
    "helpful": 2.0, "appreciate": 2.0, "good": 1.2, "nice": 1.5, "happy": 1.8, "glad": 1.8, "fine": 0.6,
    "awesome": 2.5, "brilliant": 2.5, "fantastic": 2.5, "marvellous": 2.0,
    "terrific": 2.0, "super": 1.5, "lovely": 2.0, "pleased": 2.0, "satisfied": 1.8, "resolved": 1.2,
    "easy": 1.0, "quick": 0.8, "fast": 0.8, "love": 2.0, "cheers": 1.5,
    "patient": 1.5, "kind": 1.5, "friendly": 1.5, "clear": 0.8, "solved": 1.5, "fixed": 1.2, "sorted": 1.2,
}
EN_NEGATORS = {"not", "no", "never", "nobody", "don't", "dont", "didn't", "didnt", "isn't", "isnt", "wasn't", "wasnt",
               "aren't", "can't", "cant", "cannot", "won't", "wont", "nothing", "hardly", "neither", "nor",
               "doesn't", "doesnt", "haven't", "hasn't"}
EN_INTENSIFIERS = {"very": 1.5, "really": 1.5, "so": 1.4, "extremely": 1.8, "absolutely": 1.7, "totally": 1.6,
                   "completely": 1.6, "utterly": 1.8, "incredibly": 1.7, "too": 1.3, "such": 1.3, "most": 1.3,
                   "fucking": 2.0, "bloody": 1.6}

# Mandarin cues (matched as substrings, longest first, without overlap).
ZH_CUES: dict[str, float] = {
    # hostile
    "气死": -3.0, "生气": -2.5, "愤怒": -3.0, "火大": -2.5, "恼火": -2.5, "垃圾": -3.0, "骗子": -3.0, "骗人": -3.0,
    "欺骗": -2.5, "岂有此理": -3.0, "离谱": -2.5, "受够": -3.0, "烦死": -3.0, "烦人": -2.0, "太差": -2.5,
    "差劲": -2.5, "什么破": -3.0, "破银行": -3.0, "无语": -2.0, "坑人": -3.0, "忽悠": -2.5, "混蛋": -3.5,
    "他妈": -3.5, "妈的": -3.5, "搞什么": -2.5, "怎么回事": -1.5, "到底": -1.0, "投诉": -2.0, "举报": -2.5,
    "曝光": -2.5, "律师": -2.0, "起诉": -2.5, "经理": -1.2, "领导": -1.2,
    "叫你们经理": -3.0, "找你们经理": -3.0, "叫你们领导": -3.0, "找你们领导": -3.0, "不像话": -3.0,
    "不可理喻": -3.0, "不可接受": -2.5, "不能接受": -2.5, "没用": -2.5, "废物": -3.0, "笨": -1.5, "荒唐": -2.5,
    "滚": -3.0, "凭什么": -2.5, "乱扣": -2.5, "乱收费": -2.5, "白等": -2.5, "浪费时间": -2.5, "浪费": -1.5,
    "废话": -3.0, "闭嘴": -3.5, "管不管": -2.5, "有没有人管": -3.0, "什么态度": -3.0, "态度差": -2.5, "黑心": -3.0,
    "偷": -2.0, "被偷": -0.3, "监管": -2.0, "银监会": -2.5, "人工": -0.8, "欺负": -2.5, "耍": -2.0,
    # unhappy
    "不满意": -2.5, "不放心": -1.8, "不理解": -1.2, "不明白": -1.2, "搞不懂": -1.5, "看不懂": -1.2, "好久": -1.2,
    "没有人": -1.2, "没人": -1.2, "害怕": -1.5, "紧张": -1.2, "被转走": -1.5, "退回": -0.8, "失败": -1.5,
    "出错": -1.5, "故障": -1.2, "迟迟": -1.5, "为什么": -0.6, "不满": -2.5,
    "失望": -2.0, "糟糕": -2.5, "麻烦": -1.0, "着急": -1.5, "急死": -2.5,
    "担心": -1.0, "问题": -0.5, "又": -0.4, "还是不": -1.2, "一直": -0.5, "半天": -1.2, "等了": -0.8, "太慢": -2.0,
    "慢": -0.8, "错": -1.2, "不对": -1.2, "不行": -1.2, "不公平": -2.0, "扣了": -0.6, "被盗": -0.5,
    "可惜": -1.5, "错过": -1.2, "没成功": -1.5, "不成功": -1.5, "贵": -1.0, "闪退": -1.5, "被拒": -1.5, "老是": -1.0,
    "一直没": -1.5, "太多了": -1.0, "预想": -0.8, "比我想的": -1.0, "忘记": -0.6, "久": -0.8, "难受": -1.5,
    "烦": -2.0, "郁闷": -2.0, "崩溃": -2.5, "讨厌": -2.5, "差": -1.5, "烂": -2.5, "坑": -2.0,
    # happy
    "谢谢": 2.0, "感谢": 2.0, "多谢": 2.0, "太好了": 2.5, "满意": 1.8, "不错": 1.8, "很好": 2.0, "好的": 0.8,
    "方便": 1.2, "棒": 2.0, "厉害": 1.5, "清楚": 0.8, "明白了": 0.8, "解决了": 1.5, "辛苦": 1.5, "开心": 2.0,
    "高兴": 2.0, "专业": 1.5, "耐心": 1.5, "好": 0.5, "快": 0.6,
    "态度很好": 2.0, "真好": 2.0, "没问题": 1.0, "再见": 0.3, "办好了": 1.5, "麻烦你": 0.8, "麻烦您": 0.8,
    "理想": 1.0, "可以了": 1.0, "搞定": 1.5, "给力": 2.0, "热情": 1.5, "周到": 1.5, "帮助": 0.8, "帮忙": 0.8,
}
ZH_NEGATORS = ("没有", "不", "没", "别", "未", "无", "并非", "毫不")
ZH_INTENSIFIERS = {"非常": 1.6, "特别": 1.6, "极其": 1.8, "十分": 1.5, "真的": 1.5, "真是": 1.5, "实在": 1.5,
                   "太": 1.5, "很": 1.3, "超": 1.5, "好": 1.2, "这么": 1.4, "那么": 1.3, "简直": 1.7}
_NUM_EN = r"(?:twice|(?:two|three|four|five|six|seven|eight|nine|ten|several|many|multiple|\d+) times)"
_ORD_EN = r"(?:second|third|fourth|fifth|sixth|seventh|umpteenth|hundredth|\d+(?:st|nd|rd|th))"
# Hostility without cue words (issue 6): repeated contact, escalation demands, threats to leave or to go to the
# regulator, rhetorical challenges. Regular expressions over the lower-cased line; each match adds its weight once.
# Tuned on tests/dialog/data/sentiment_dev.tsv only (held-out figures: docs/CONSOLE.md).
EN_PATTERNS: tuple[tuple[str, float, str], ...] = (
    # repeated contact
    (rf"\b(?:call(?:ed|ing)?|phon(?:ed|ing)|r(?:a|u)ng|explain(?:ed|ing)?|told|asked|transferred|contacted|been "
     rf"through)\b[^.?!]{{0,30}}\b{_NUM_EN}", -2.5, "repeat:n times"),
    (rf"\b{_ORD_EN} time\b", -1.5, "repeat:nth time"),
    (r"\bhow many (?:more )?times\b", -3.0, "repeat:how many times"),
    (r"\bevery (?:single )?time (?:i|we) (?:call|ring|phone|try|ask)", -2.5, "repeat:every time"),
    (r"\b(?:nobody|no one|no-one)\b[^.?!]{0,20}\b(?:calls?|rings?|got|gets|get) (?:me )?back\b", -2.5,
     "repeat:no call back"),
    (r"\b(?:nobody|no one|no-one) (?:ever |has |have |will )?(?:fixed|fixes|listens?|listened|helped|helps|knows|"
     r"cares?|bothered|answers?)\b", -2.0, "repeat:nobody"),
    (r"\byou (?:promised|said)\b|\bafter promising\b|\bpromised (?:me|us)\b", -2.5, "repeat:promised"),
    (r"\b(?:would|should|was supposed to|were supposed to|it'd) (?:be|have been) "
     r"(?:fixed|sorted|resolved|done)\b", -1.5, "repeat:was to be fixed"),
    (r"\blonger than (?:i |we )?(?:expected|thought|was told)\b|\btaking (?:so |too )?long\b", -1.2, "slow"),
    (r"\bpassed (?:around|from)|\b(?:department|person) to (?:department|person)|\bbounced (?:around|between)|"
     r"\btransferred (?:me )?(?:around|again)|\bdon'?t transfer me\b", -3.0, "repeat:passed around"),
    # escalation
    (r"\b(?:speak|talk|speaking|talking)\s+(?:to|with)\s+(?:your|a|the|someone|somebody)?\s*(?:manager|supervisor|"
     r"boss|senior|in charge)", -3.0, "escalate:manager"),
    (r"\b(?:get|give|fetch|find|put) me (?:through to )?(?:a|your|the) (?:manager|supervisor|boss)", -3.0,
     "escalate:get me"),
    (r"\bi demand\b", -2.5, "escalate:demand"),
    (r"\bsomeone (?:who|that) (?:can )?(?:actually|really|even) ", -2.5, "escalate:someone who actually"),
    (r"\bsomeone (?:senior|competent|in charge)\b", -2.5, "escalate:someone senior"),
    # threats to leave, to complain outside the bank
    (r"\b(?:tak(?:e|ing)|mov(?:e|ing)|switch(?:ing)?|transfer(?:ring)?|leav(?:e|ing)|tak(?:e|ing) my business)\b"
     r"[^.?!]{0,30}\b(?:another|a different|other|a new) bank\b|\b(?:business|money|account) elsewhere\b",
     -3.0, "threat:leave"),
    (r"\b(?:report|reporting|reported|complain|complaining|complaint|contact|contacting|go(?:ing)? to|take "
     r"(?:this|it) to|escalat(?:e|ing)|writ(?:e|ing) to)\b[^.?!]{0,40}\b(?:regulator|ombudsman|fca|press|media|"
     r"newspapers?|lawyers?|solicitors?|court)\b", -3.0, "threat:regulator"),
    (r"\b(?:i'?m going to|i'?ll|i will|i'?m gonna) (?:close|cancel) (?:my|all my|the) accounts?\b", -2.0,
     "threat:close"),  # "I want to close my account" is a request
    # rhetorical challenges, loyalty thrown back
    (r"\bdo(?:es)? (?:you|anyone|anybody)(?: there)? (?:even )?know what (?:you|they)(?:'re| are) doing", -3.0,
     "challenge:know what doing"),
    (r"\bwhy (?:can'?t|won'?t|doesn'?t|does nobody|does no one|is nobody|can nobody) (?:anyone|anybody|you|nobody)?",
     -2.0, "challenge:why can't"),
    (r"\b(?:is|are) (?:anyone|anybody|you) (?:even )?listening\b", -2.5, "challenge:listening"),
    (r"\bhow you treat\b", -3.0, "challenge:how you treat"),
    (r"\bstraight answer\b|\bdifferent answer\b", -1.0, "challenge:answer"),
    (r"\bthanks for nothing\b", -4.0, "sarcasm:thanks for nothing"),
    (r"\bjust (?:great|perfect|wonderful|brilliant|fantastic|lovely)\b|\bjust what i needed\b", -2.5,
     "sarcasm:just great"),
    (r"\byou(?:'re| are)? (?:stole|stealing|steal|robbed|robbing)\b|\byou people\b", -2.5, "hostile:you"),
)
# A positive opener followed by trouble ("Oh brilliant, the app is down again") is sarcasm: its praise counts
# against, unless the line thanks for something or says it is sorted.
_EN_SARCASM_OPEN = re.compile(r"^\W*(?:oh,?\s+)?(?:great|wonderful|brilliant|fantastic|perfect|lovely|marvellous|"
                              r"terrific|super|excellent|nice one)\b")
_EN_TROUBLE = re.compile(r"\b(?:again|another|down|lost|hold|fee|fees|still|nobody|broken|wrong|charged|didn'?t|"
                         r"never|no one)\b")
_EN_SINCERE = re.compile(r"\b(?:thanks?|thank you|sorted|resolved|fixed|helpful|appreciate|cheers)\b")

_ZH_BOSS = r"(?:领导|经理|主管|负责人|上级|老板|行长)"
_ZH_REGULATOR = (r"(?:银保监|银监|保监|金管局|金融监管|人民银行|人行|消保|消协|消费者协会|12378|12363|"
                 r"媒体|记者|电视台|法院)")
ZH_PATTERNS: tuple[tuple[str, float, str], ...] = (
    # repeated contact
    (r"(?:打|说|问|来|讲|跑|联系|反映|投诉|解释)了?(?:有)?(?:好几|好多|[两三四五六七八九十几多]+|\d+)"
     r"[次遍趟回]", -3.0, "repeat:n times"),
    (r"第[二三四五六七八九十几\d]+次", -2.0, "repeat:nth time"),
    (r"多少[遍次回]", -3.0, "repeat:how many times"),
    (r"每次[^，。！？]{0,8}(?:都|还)", -2.0, "repeat:every time"),
    (r"(?:都是|又是|还是)(?:这个|这些|一样的?)(?:答复|回答|答案|说法|话)?|每次都一样", -1.5, "repeat:same answer"),
    (r"还是?没(?:人|有人)?(?:管|解决|处理|到账|回复|办好|弄好)", -2.0, "repeat:still not"),
    (r"没人管|没有人管", -2.0, "repeat:nobody cares"),
    (r"(?:上次|上回|上个月|上周|之前)(?:你们)?(?:就)?说", -2.0, "repeat:promised"),
    (r"到现在(?:也|还|都)?没|(?:现在|都)(?:一个|两个|几个)?(?:星期|礼拜|月)了", -1.5, "repeat:still not"),
    (r"转来转去|推来推去|踢皮球|推给", -3.0, "repeat:passed around"),
    # escalation
    (rf"(?:叫|找|让|把|请|要)你们?的?{_ZH_BOSS}|{_ZH_BOSS}(?:出来|来接|过来)", -3.0, "escalate:boss"),
    (r"(?:能不能|行不行|会不会|能不能行|还能不能)(?:办|行|处理|解决|给个|干)|有没有人(?:会|能|管)", -2.5,
     "challenge:can you"),
    (r"给个(?:准话|说法|交代)", -2.0, "challenge:answer"),
    # threats
    (rf"(?:去|找|向|到|打|给|告到)[^，。！？]{{0,4}}{_ZH_REGULATOR}", -3.0, "threat:regulator"),
    (r"告你们|起诉你们", -3.0, "threat:sue"),
    (r"(?:转|换)(?:到|去)?(?:别的|其他|另一家|别家)银行|换(?:一)?家银行|(?<!被)(?:全部|都)转走|"
     r"我就?把[^，。！？]{0,8}转走", -3.0, "threat:leave"),
    (r"(?:再不|要是|如果|不然|否则)[^。？！]{0,14}(?:我就|就去|就把|就要)", -2.0, "threat:or else"),
    (r"我要销户|全部销户|销户算了|我不存了", -1.5, "threat:close"),  # 我想销户 is a request
    # challenges, sarcasm
    (r"听不进去|听不懂|听不明白|听不见吗", -2.5, "challenge:not listening"),
    (r"这么对(?:我|待)|这样对(?:我|待)", -3.0, "challenge:how you treat"),
    (r"跟你们?耗|没时间跟", -2.5, "challenge:no time"),
    (r"真行啊|可真会|真会办事|好得很|呵呵|真是谢谢你们|效率真高", -3.0, "sarcasm"),
)
_ZH_SARCASM = re.compile(r"真行啊|可真会|真会办事|好得很|呵呵|真是谢谢你们")
_EN_RULES = tuple((re.compile(p), w, name) for p, w, name in EN_PATTERNS)
_ZH_RULES = tuple((re.compile(p), w, name) for p, w, name in ZH_PATTERNS)
_ZH_ORDER = sorted(ZH_CUES, key=len, reverse=True)
_ZH_HAO_NOT_GOOD = set("几多像些")
_CJK = re.compile(r"[\u3400-\u9fff]")
_CLAUSE = re.compile(r"[,.;:!?，。；：！？]+|\s(?:but|though|although)\s")
_SOFTENER = re.compile(r"\b(?:a bit|a little|slightly|somewhat|a tad|kind of|sort of)\b|有点|有些|一点|稍微",
                       re.IGNORECASE)
_YOU = re.compile(r"\b(?:you|your|you're|yours)\b|你们|[^其]你", re.IGNORECASE)
_POLITE = {"thank you", "thanks", "thank", "cheers", "thanks a lot", "no problem"}
_WORD = re.compile(r"[A-Za-z]+(?:['’-][A-Za-z]+)*")


@dataclass(frozen=True)
class LineSentiment:
    """One line's score in [-1, 1] (negative = unhappy) and the cues that made it."""

    score: float
    cues: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return label_of(self.score)


def label_of(score: float) -> str:
    """angry (<= ANGRY_AT), negative (< NEGATIVE_AT), positive (> POSITIVE_AT) or neutral."""
    if score <= ANGRY_AT:
        return "angry"
    if score < NEGATIVE_AT:
        return "negative"
    if score > POSITIVE_AT:
        return "positive"
    return "neutral"


def detect_language(text: str) -> str:
    """zh when the line has Chinese characters, else en."""
    return "zh" if _CJK.search(text) else "en"


def score_line(text: str, lang: str | None = None) -> LineSentiment:
    """The sentiment of one caller line; `lang` None (or anything but en/zh) is guessed from the text."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    text = text.strip()[:2000]
    if not text:
        return LineSentiment(0.0)
    lang = lang if lang in ("en", "zh") else detect_language(text)
    total, cues, praise = (_score_zh(text) if lang == "zh" or _CJK.search(text) else (0.0, [], 0.0))
    if _WORD.search(text):  # English words, also inside a Chinese line
        en_total, en_cues, en_praise = _score_en(text)
        total, cues, praise = total + en_total, cues + en_cues, praise + en_praise
    total += _patterns(text, cues)
    if praise > 0 and any(c.startswith("sarcasm") for c in cues):
        total -= 2 * praise  # "Great, just great": the praise counts against
    if total < 0 and _SOFTENER.search(text):
        total *= 0.7  # "a bit worried", 有点着急: unhappy, said mildly
    if total < 0 and _YOU.search(text):
        total *= 1.4  # unhappiness aimed at the listener ("you people", 你们) is hostility
    bangs = min(text.count("!") + text.count("！"), 3)
    if bangs and total < 0:
        total *= 1.0 + 0.25 * bangs
    return LineSentiment(round(math.tanh(total / _SCALE), 4), tuple(cues))


def _patterns(text: str, cues: list[str]) -> float:
    """The hostility patterns (EN_PATTERNS, ZH_PATTERNS) and the English sarcasm opener; appends their cues."""
    total = 0.0
    lower = text.lower().replace("’", "'")
    rules = (_ZH_RULES if _CJK.search(text) else ()) + (_EN_RULES if _WORD.search(text) else ())
    for rx, weight, name in rules:
        if rx.search(lower):
            total += weight
            cues.append(name)
    if _EN_SARCASM_OPEN.match(lower) and _EN_TROUBLE.search(lower) and not _EN_SINCERE.search(lower):
        total -= 3.0
        cues.append("sarcasm:praise then trouble")
    return total


def _score_en(text: str) -> tuple[float, list[str], float]:
    total, cues, praise = 0.0, list[str](), 0.0
    for clause in _CLAUSE.split(text):  # negation and intensifiers do not reach across punctuation
        t, c, p = _score_en_clause(clause)
        total, cues, praise = total + t, cues + c, praise + p
    return total, cues, praise


def _score_en_clause(text: str) -> tuple[float, list[str], float]:
    raw = _WORD.findall(text)
    words = [w.lower().replace("’", "'") for w in raw]
    total, cues, praise = 0.0, [], 0.0
    i = 0
    while i < len(words):
        weight, span = 0.0, 1
        for n in (4, 3, 2):
            phrase = " ".join(words[i:i + n])
            if len(words) - i >= n and phrase in EN_PHRASES:
                weight, span = EN_PHRASES[phrase], n
                cues.append(phrase)
                break
        else:
            w = words[i]
            if w in EN_WORDS and not (w in EN_INTENSIFIERS and i + 1 < len(words) and _en_cue(words[i + 1])):
                weight = EN_WORDS[w]
                cues.append(w)
        if weight:
            window = words[max(0, i - 3):i]
            for prev in reversed(window):
                if prev in EN_INTENSIFIERS:
                    weight *= EN_INTENSIFIERS[prev]
                    break
            if (any(p in EN_NEGATORS for p in window[-2:]) and words[i:i + span] != ["never"]
                    and cues[-1] not in _POLITE):
                # "not happy" is unhappy; "not bad" is mildly good, not as good as "good"
                weight = -weight * (0.5 if weight < 0 else 0.9)
                cues[-1] = "not " + cues[-1]
            if any(r.isupper() and len(r) > 2 for r in raw[i:i + span]):
                weight *= 1.5  # SHOUTED
            total += weight
            praise += max(weight, 0.0)
        i += span
    return total, cues, praise


def _en_cue(word: str) -> bool:
    return word in EN_WORDS


def _score_zh(text: str) -> tuple[float, list[str], float]:
    total, cues, praise = 0.0, [], 0.0
    taken = [False] * len(text)
    found: list[tuple[int, str]] = []
    for cue in _ZH_ORDER:
        start = text.find(cue)
        while start >= 0:
            end = start + len(cue)
            if not any(taken[start:end]):
                found.append((start, cue))
                for k in range(start, end):
                    taken[k] = True
            start = text.find(cue, end)
    for start, cue in sorted(found):
        if cue == "好" and (text[start + 1:start + 2] in ZH_CUES or text[start + 1:start + 2] in _ZH_HAO_NOT_GOOD):
            continue  # 好 as an intensifier (好烦) or a quantity (好几遍, 好像), not as "good"
        weight = ZH_CUES[cue]
        before = text[max(0, start - 4):start]
        for word, factor in ZH_INTENSIFIERS.items():
            if word in before:
                weight *= factor
                break
        if any(before.endswith(n) or before[-2:-1] == n for n in ZH_NEGATORS):
            weight = -weight * (0.5 if weight < 0 else 0.9)
            cue = "不" + cue
        total += weight
        praise += max(weight, 0.0)
        cues.append(cue)
    return total, cues, praise


# Acoustic cues (asr/prosody.py measures them; the composition passes plain numbers): a line said this many dB
# above the caller's own usual level in this call is RAISED; this much faster (syllables per second) or higher
# (median pitch) than their usual is AROUSED.
LOUD_DB = 6.0
FAST_RATIO = 1.25
HIGH_PITCH_RATIO = 1.2


@dataclass(frozen=True)
class Voice:
    """How a line was said, against the caller's own earlier lines in this call: level above their usual (dB),
    speaking rate and pitch as ratios of their usual; None where unknown (the first line has no baseline)."""

    loud_db: float | None = None
    rate_ratio: float | None = None
    pitch_ratio: float | None = None

    @property
    def raised(self) -> bool:
        return self.loud_db is not None and self.loud_db >= LOUD_DB

    @property
    def aroused(self) -> bool:
        return ((self.rate_ratio is not None and self.rate_ratio >= FAST_RATIO)
                or (self.pitch_ratio is not None and self.pitch_ratio >= HIGH_PITCH_RATIO))


def with_voice(line: LineSentiment, voice: Voice | None) -> LineSentiment:
    """The text score adjusted by how it was said. The rule (docs/CONSOLE.md):
    - negative text said RAISED (>= LOUD_DB over the caller's usual) is angry;
    - negative text said faster or higher (AROUSED) without being louder: the score x1.3;
    - text with any unhappy cue but neutral overall, said raised AND aroused: at least negative;
    - positive text, and text with no cue at all, keep their score (an excited "thank you!", a caller raising
      their voice on a bad line are not angry); quieter or slower speech changes nothing."""
    if voice is None or not line.cues or line.score > 0:
        return line
    score, cues = line.score, list(line.cues)
    if score < NEGATIVE_AT and voice.raised:
        score = min(score, ANGRY_AT - 0.05)
        cues.append("voice:raised")
    elif score < NEGATIVE_AT and voice.aroused:
        score = max(-1.0, score * 1.3)
        cues.append("voice:aroused")
    elif voice.raised and voice.aroused and _has_unhappy_cue(line):
        score = min(score, NEGATIVE_AT - 0.15)
        cues.append("voice:raised+aroused")
    else:
        return line
    return LineSentiment(round(score, 4), tuple(cues))


def _has_unhappy_cue(line: LineSentiment) -> bool:
    for cue in line.cues:
        if ":" in cue:
            return True  # a hostility pattern
        word = cue.removeprefix("not ").removeprefix("不")
        weight = EN_PHRASES.get(word, EN_WORDS.get(word, ZH_CUES.get(word, 0.0)))
        if (weight < 0) != (cue != word):  # an unhappy cue, or a negated happy one
            return True
    return False


@dataclass
class CallMood:
    """The running sentiment of one caller: `add(line)` per caller line; `score`, `minimum`, `angry`."""

    score: float = 0.0
    minimum: float = 0.0
    lines: int = 0
    angry: bool = False
    ever_angry: bool = False
    recent: list[float] = field(default_factory=list)

    def add(self, line: LineSentiment) -> bool:
        """Takes one caller line; returns True when the angry flag or the label changed."""
        before = (self.angry, label_of(self.score))
        self.score = round(line.score if self.lines == 0 else ALPHA * line.score + (1 - ALPHA) * self.score, 4)
        self.lines += 1
        self.minimum = min(self.minimum, line.score)
        self.recent = [*self.recent, line.score][-5:]
        self.angry = line.score <= ANGRY_AT or self.score <= ANGRY_AT or (self.lines > 1 and self.score <= UNHAPPY_AT)
        self.ever_angry = self.ever_angry or self.angry
        return (self.angry, label_of(self.score)) != before

    @property
    def label(self) -> str:
        return "angry" if self.angry else label_of(self.score)
