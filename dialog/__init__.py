"""Dialog: NLU, flow engine driven by configs/, slot filling, knowledge base answers."""

from dialog.actions import Action, Hangup, Listen, Say, Transfer, Understood
from dialog.chat import ChatReply, ChatSession, chat_turn
from dialog.config_file import FlowConfigError
from dialog.corebank import BankError, CoreBank
from dialog.engine import Conversation, DialogEngine
from dialog.flow import Flow, FlowConfig, load_flow
from dialog.knowledge import KnowledgeBase, KnowledgeEntry, KnowledgeHit, load_knowledge
from dialog.nlu import IntentClassifier, IntentScore, Interpretation, NearestExampleClassifier, Nlu, TrainingExample

__all__ = [
    "Action",
    "BankError",
    "ChatReply",
    "ChatSession",
    "Conversation",
    "CoreBank",
    "DialogEngine",
    "Flow",
    "FlowConfig",
    "FlowConfigError",
    "Hangup",
    "IntentClassifier",
    "IntentScore",
    "Interpretation",
    "KnowledgeBase",
    "KnowledgeEntry",
    "KnowledgeHit",
    "Listen",
    "NearestExampleClassifier",
    "Nlu",
    "Say",
    "TrainingExample",
    "Transfer",
    "Understood",
    "chat_turn",
    "load_flow",
    "load_knowledge",
]
