"""The console's words in English and Chinese; the language comes from ?lang=, a cookie or the user."""

from __future__ import annotations

LANGS = ("en", "zh")

TEXT: dict[str, tuple[str, str]] = {
    # key: (en, zh)
    "title": ("Hotline console", "热线控制台"),
    "login": ("Log in", "登录"),
    "logout": ("Log out", "退出"),
    "user": ("User name", "用户名"),
    "password": ("Password", "密码"),
    "bad_credentials": ("Wrong user name or password.", "用户名或密码错误。"),
    "locked": ("Too many failed logins: this account is locked for 15 minutes.",
               "登录失败次数过多：账户已锁定15分钟。"),
    "expired": ("Your session ended. Please log in again.", "会话已过期，请重新登录。"),
    "desktop": ("Agent desktop", "坐席工作台"),
    "wallboard": ("Wallboard", "监控大屏"),
    "search": ("Call search", "通话查询"),
    "users": ("Users", "用户管理"),
    "knowledge": ("Knowledge base", "知识库"),
    "soon": ("coming soon", "即将推出"),
    "state": ("State", "状态"),
    "available": ("Available", "空闲"),
    "on_break": ("Break", "小休"),
    "logged_out": ("Logged out", "签出"),
    "not_ready": ("Not ready", "未就绪"),
    "ringing": ("Ringing", "振铃"),
    "on_call": ("On call", "通话中"),
    "wrap_up": ("Wrap-up", "话后处理"),
    "no_agent": ("Your user is not an agent in the routing configuration.", "您的用户未配置为坐席。"),
    "no_routing": ("Routing is not running in this process (console only).", "本进程未运行排队路由（仅控制台）。"),
    "waiting_call": ("Waiting for a call…", "等待来电…"),
    "incoming": ("Incoming call", "来电"),
    "caller": ("Caller", "来电号码"),
    "verified": ("Verified identity", "身份验证"),
    "intent": ("Intent", "意图"),
    "slots": ("Details", "要素"),
    "language": ("Language", "语言"),
    "transcript": ("Transcript", "通话记录"),
    "wrapup": ("Wrap-up", "话后小结"),
    "disposition": ("Disposition", "处理结果"),
    "notes": ("Notes", "备注"),
    "save": ("Save", "保存"),
    "saved": ("Saved.", "已保存。"),
    "queues": ("Queues", "队列"),
    "queue": ("Queue", "队列"),
    "waiting": ("Waiting", "排队数"),
    "longest": ("Longest wait", "最长等待"),
    "service_level": ("Service level", "服务水平"),
    "abandoned": ("Abandoned", "放弃数"),
    "answered": ("Answered", "接通数"),
    "agents": ("Agents", "坐席"),
    "agent": ("Agent", "坐席"),
    "calls_now": ("Calls in progress", "进行中的通话"),
    "none": ("None", "无"),
    "text": ("Words", "关键词"),
    "from": ("From", "起始日期"),
    "to": ("To", "截止日期"),
    "outcome": ("Outcome", "结果"),
    "any": ("any", "全部"),
    "find": ("Search", "搜索"),
    "results": ("Results", "结果"),
    "started": ("Started", "开始时间"),
    "duration": ("Duration", "时长"),
    "call": ("Call", "通话"),
    "timeline": ("Timeline", "时间线"),
    "recording": ("Recording", "录音"),
    "no_recording": ("No recording for this call.", "此通话无录音。"),
    "role": ("Role", "角色"),
    "add_user": ("Add user", "添加用户"),
    "change_role": ("Change role", "修改角色"),
    "unlock": ("Unlock", "解锁"),
    "locked_until": ("Locked until", "锁定至"),
    "audit": ("Audit log", "审计日志"),
    "forbidden": ("You may not open this page.", "您无权访问此页面。"),
    "not_found": ("Not found.", "未找到。"),
    "bad_request": ("The request was not understood.", "请求无效。"),
    "dashboard": ("Dashboard", "数据看板"),
    "by": ("Group by", "分组"),
    "day": ("day", "按天"),
    "hour": ("hour", "按小时"),
    "calls": ("Calls", "通话数"),
    "containment": ("Contained by the robot", "机器人独立处理率"),
    "transfer_rate": ("Transferred", "转人工率"),
    "abandonment": ("Abandoned", "放弃率"),
    "asa": ("Average speed of answer", "平均应答速度"),
    "aht": ("Average handle time", "平均处理时长"),
    "intent_mix": ("Intent mix", "意图分布"),
    "unanswered": ("Top unanswered questions", "未能回答的问题"),
    "complaints": ("Complaint categories", "投诉类别"),
    "example": ("example", "示例"),
    "sp_system": ("system", "系统"),
    "sp_caller": ("caller", "客户"),
    "sp_agent": ("agent", "坐席"),
    "sp_event": ("event", "事件"),
    "d_resolved": ("resolved", "已解决"),
    "d_follow_up": ("follow up", "待跟进"),
    "d_escalated": ("escalated", "已升级"),
    "d_complaint": ("complaint", "投诉"),
    "d_wrong_number": ("wrong number", "打错电话"),
    "d_other": ("other", "其他"),
    "kb_off": ("The knowledge-base editor is not connected in this process.", "本进程未连接知识库编辑器。"),
    "kb_draft": ("Draft", "草稿"),
    "kb_add": ("Add an entry", "新增条目"),
    "kb_category": ("Category", "类别"),
    "kb_version": ("Version", "版本"),
    "kb_question": ("Question", "问题"),
    "kb_questions": ("Questions (one per line)", "问法（每行一个）"),
    "kb_answer": ("Answer", "答案"),
    "kb_in_force": ("In force", "生效期"),
    "kb_always": ("always", "长期"),
    "kb_from": ("Effective from", "生效日期"),
    "kb_until": ("Effective until", "失效日期"),
    "kb_versions": ("Published versions", "已发布版本"),
    "kb_publish": ("Publish the draft", "发布草稿"),
    "kb_publish_note": ("Callers hear the new version from their next call on; no restart.",
                        "发布后新来电即使用新版本，无需重启。"),
    "kb_time": ("Published at", "发布时间"),
    "kb_entries": ("Entries", "条目数"),
    "kb_live": ("live", "使用中"),
    "kb_none_published": ("Nothing published yet: calls are answered from the flow's own knowledge file.",
                          "尚未发布：来电使用流程自带的知识文件。"),
    "kb_saved": ("Saved in the draft", "已保存到草稿"),
    "kb_deleted": ("Deleted from the draft", "已从草稿删除"),
    "kb_published": ("Published", "已发布"),
    "kb_save_note": ("Changes go into the draft; publish to make them live.", "修改保存在草稿中，发布后生效。"),
    "kb_delete": ("Delete this entry", "删除此条目"),
    "kb_delete_note": ("From the draft; published versions keep it.", "仅从草稿删除，已发布版本不变。"),
    "chat": ("Chat", "在线客服"),
    "chat_off": ("The chat channel runs inside `hotline serve` only.", "在线客服仅在 hotline serve 中运行。"),
    "chat_note": ("The same dialog as the phone line, in text. Digits are keypad keys.",
                  "与电话相同的对话流程，文字形式；数字视为按键。"),
    "chat_message": ("Message", "消息"),
    "chat_send": ("Send", "发送"),
    "chat_new": ("New chat", "新会话"),
    "chat_you": ("you", "您"),
    "chat_transfer": ("handed to the queue", "已转入队列"),
    "chat_ended": ("chat ended", "会话已结束"),
    "password_rules": ("At least 10 characters, not only digits, not containing the user name.",
                       "至少10个字符，不能全为数字，不能包含用户名。"),
}


def pick_lang(*candidates: str | None) -> str:
    for c in candidates:
        if not c:
            continue
        c = c.lower()
        if c.startswith("zh"):
            return "zh"
        if c.startswith("en"):
            return "en"
    return "en"


def translate_or_keep(prefix: str, value: str, lang: str) -> str:
    """A data value (speaker, disposition) in the UI language; unknown values are shown as they are."""
    return translate(prefix + value, lang) if prefix + value in TEXT else value


def translate(key: str, lang: str) -> str:
    pair = TEXT.get(key)
    if pair is None:
        return key
    return pair[1] if lang == "zh" else pair[0]
