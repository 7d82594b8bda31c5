"""Dialog: NLU, flow engine driven by configs/, slot filling, knowledge base answers."""

from dialog.actions import Action, Hangup, Listen, Say, Transfer, Understood
from dialog.config_file import FlowConfigError
from dialog.engine import Conversation, DialogEngine
from dialog.flow import Flow, FlowConfig, load_flow
from dialog.knowledge import KnowledgeBase, KnowledgeEntry, KnowledgeHit, load_knowledge
from dialog.nlu import IntentClassifier, IntentScore, Interpretation, NearestExampleClassifier, Nlu, TrainingExample

__all__ = [
    "Action",
    "Conversation",
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
    "load_flow",
    "load_knowledge",
]
