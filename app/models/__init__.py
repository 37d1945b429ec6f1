"""All tables. Import from here so that Alembic and the app see one metadata."""

from app.models.accounts import ApiKey, Invitation, Membership, Role, Team, User, UserSession
from app.models.base import Base, utcnow
from app.models.costs import TeamCostSettings
from app.models.datasets import AugmentationJob, AugmentationStatus, Dataset, DatasetStatus, GeneratedExample
from app.models.experiments import Comparison, ComparisonPair, Evaluation, Sweep, Vote
from app.models.notifications import DeliveryAttempt, NotificationDelivery, Webhook
from app.models.runs import Artifact, Checkpoint, Run, RunEvent, RunStatus, Metric
from app.models.playground import Transcript
from app.models.registry import BaseModel, ModelStatus
from app.models.releases import ModelAlias, ModelVersion, QualityGate, Release
from app.models.workers import Worker

__all__ = [
    "ApiKey", "Artifact", "AugmentationJob", "AugmentationStatus", "GeneratedExample", "Base", "BaseModel", "Checkpoint", "Comparison", "ComparisonPair",
    "Dataset", "DatasetStatus", "DeliveryAttempt", "NotificationDelivery", "Webhook", "Evaluation", "Invitation", "Run", "RunEvent", "RunStatus",
    "Membership", "Metric", "ModelAlias", "ModelStatus", "ModelVersion", "QualityGate", "Release", "Role", "Sweep", "Team", "TeamCostSettings", "Transcript", "User", "UserSession",
    "Vote", "Worker", "utcnow",
]
