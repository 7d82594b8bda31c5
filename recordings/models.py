"""SQLAlchemy models: calls, transcript lines, and what else a call leaves behind.

The schema is made by Alembic migrations (recordings/migrations/), never by create_all.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Call(Base):
    __tablename__ = "calls"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sip_call_id: Mapped[str] = mapped_column(String(255), default="")
    caller: Mapped[str] = mapped_column(String(128), default="")
    called: Mapped[str] = mapped_column(String(128), default="")
    language: Mapped[str] = mapped_column(String(8), default="")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Outcome as a supervisor reads it: answered, transferred, abandoned, caller_hangup, goodbye,
    # interrupted (the process died mid-call), failed.
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_intent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    queue: Mapped[str | None] = mapped_column(String(64), nullable=True)
    agent: Mapped[str | None] = mapped_column(String(128), nullable=True)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    agent_answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    recording_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    worker: Mapped[str] = mapped_column(String(64), default="")
    # The retention policy deleted the audio; the record and transcript stay.
    recording_deleted: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")

    lines: Mapped[list[TranscriptLine]] = relationship(
        back_populates="call", order_by="TranscriptLine.seq", cascade="all, delete-orphan"
    )


class TranscriptLine(Base):
    __tablename__ = "transcript_lines"
    __table_args__ = (Index("ix_transcript_call_seq", "call_id", "seq", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    # caller, system (the robot), agent, or event (routing and other notes for the reader)
    speaker: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    intent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    language: Mapped[str] = mapped_column(String(8), default="")

    call: Mapped[Call] = relationship(back_populates="lines")


# -- what else a call leaves behind (migration 0002) ---------------------------------------------------
# Rows written by a call carry a client-made id (uuid hex) so that a write replayed from the journal
# after a database outage is inserted once (see recordings/journal.py).


class Leg(Base):
    """One SIP leg of a call: the caller's, then each agent leg dialled for it."""

    __tablename__ = "legs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # caller | agent
    sip_call_id: Mapped[str] = mapped_column(String(255), default="")
    peer: Mapped[str] = mapped_column(String(255), default="")
    codec: Mapped[str] = mapped_column(String(16), default="")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)


class IntentRecord(Base):
    """An intent understood during a call, with its slots."""

    __tablename__ = "intents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    intent: Mapped[str] = mapped_column(String(64), index=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="speech")  # speech | dtmf | knowledge
    line_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)

    slots: Mapped[list[SlotValue]] = relationship(cascade="all, delete-orphan")


class SlotValue(Base):
    __tablename__ = "intent_slots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    intent_id: Mapped[str] = mapped_column(ForeignKey("intents.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(Text)


class DtmfRecord(Base):
    """Keys pressed; during secret entry only "*" per digit is stored."""

    __tablename__ = "dtmf"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    digits: Mapped[str] = mapped_column(String(64))
    secret: Mapped[bool] = mapped_column(Boolean, default=False)


class QueueEntry(Base):
    """A call's time in a queue: queued, then answered or abandoned."""

    __tablename__ = "queue_entries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    queue: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16))  # queued | answered | abandoned
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    left_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    wait_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    agent: Mapped[str | None] = mapped_column(String(128), nullable=True)


class AgentSession(Base):
    """An agent's logged-in stretch."""

    __tablename__ = "agent_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    agent: Mapped[str] = mapped_column(String(128), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AgentStateChange(Base):
    __tablename__ = "agent_states"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    session_id: Mapped[str | None] = mapped_column(
        ForeignKey("agent_sessions.id", ondelete="CASCADE"), nullable=True, index=True
    )
    agent: Mapped[str] = mapped_column(String(128), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(32))  # ready, not_ready, ringing, talking, wrap_up, logged_out
    reason: Mapped[str] = mapped_column(String(64), default="")


class Complaint(Base):
    __tablename__ = "complaints"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    ticket: Mapped[str] = mapped_column(String(32), unique=True)
    call_id: Mapped[str | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    category: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | in_progress | resolved | closed
    text: Mapped[str] = mapped_column(Text, default="")


class CallbackRecord(Base):
    """A promised callback (migration 0006; recordings/callbacks.py): kept until it is made, fails or expires."""

    __tablename__ = "callbacks"
    __table_args__ = (Index("ix_callbacks_state_node", "state", "node"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    queue: Mapped[str] = mapped_column(String(64))
    number: Mapped[str] = mapped_column(Text)  # sealed with the recording key when one is set
    number_hint: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(8))
    context: Mapped[str] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    priority: Mapped[int] = mapped_column(Integer)
    place: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # pending dialling connected done failed expired
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    node: Mapped[str] = mapped_column(String(64))
    queue_entry: Mapped[str | None] = mapped_column(String(32), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
